"""The GPT: GPT-2 weights load exactly, the KV cache changes nothing, padding changes nothing."""
import json

import pytest
import torch

from reft_mini.model import GPT, GPTConfig, PRESETS, config_from_preset, load_safetensors


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GPTConfig(**{**PRESETS["tiny"], "vocab_size": 97, **kw})
    return GPT(cfg).eval()


def test_presets_have_the_documented_sizes():
    demo = GPT(config_from_preset("demo"))
    assert 1.0e6 <= demo.num_params() <= 3.0e6
    with pytest.raises(ValueError, match="unknown model preset"):
        config_from_preset("huge")


def test_kv_cache_decoding_matches_full_forward_at_every_step():
    model = tiny_model()
    idx = torch.randint(0, 97, (3, 20))
    full = model.logits(model(idx))                                    # (B,T,V)
    cache = model.new_kv_cache(3, 20)
    h = model(idx[:, :5], kv_cache=cache)                              # prefix in one go
    assert torch.allclose(model.logits(h), full[:, :5], atol=1e-5)
    for t in range(5, 20):                                             # then one token at a time
        h = model(idx[:, t:t + 1], kv_cache=cache)
        assert torch.allclose(model.logits(h)[:, 0], full[:, t], atol=1e-5), f"step {t}"


def test_left_padding_gives_the_same_hidden_states_as_the_unpadded_sequence():
    model = tiny_model()
    seq = torch.randint(0, 97, (1, 9))
    alone = model(seq)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), seq], 1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool)], 1)
    h = model(padded, attention_mask=mask)
    assert torch.allclose(h[:, 4:], alone, atol=1e-5)
    assert torch.isfinite(h).all(), "pad queries must not produce NaN"


def test_value_head_gives_one_scalar_per_position_and_starts_at_zero():
    model = tiny_model()
    h = model(torch.randint(0, 97, (2, 6)))
    v = model.values(h)
    assert v.shape == (2, 6)
    assert torch.all(v == 0)


def test_sequences_longer_than_block_size_are_refused():
    model = tiny_model(block_size=8)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.fixture(scope="module")
def hf_gpt2_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=64, n_embd=48, n_layer=3, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    # Random init leaves biases and LayerNorms at 0/1; perturb every tensor so a mix-up would show.
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(folder)
    return folder, hf


def test_from_pretrained_matches_transformers_gpt2_logits(hf_gpt2_folder):
    folder, hf = hf_gpt2_folder
    ours = GPT.from_pretrained(folder).eval()
    idx = torch.randint(0, 101, (2, 30))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours.logits(ours(idx))
    assert (got - expected).abs().max().item() < 1e-4


def test_from_pretrained_reads_pytorch_model_bin_too(hf_gpt2_folder, tmp_path):
    folder, hf = hf_gpt2_folder
    for name in ("config.json",):
        (tmp_path / name).write_text((folder / name).read_text())
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = GPT.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, 101, (1, 12))
    with torch.no_grad():
        assert (ours.logits(ours(idx)) - hf(idx).logits).abs().max().item() < 1e-4


def test_safetensors_parser_reads_every_tensor(hf_gpt2_folder):
    folder, hf = hf_gpt2_folder
    sd = load_safetensors(folder / "model.safetensors")
    ref = hf.state_dict()
    for k, v in sd.items():
        assert torch.equal(v, ref[k]), k


def test_from_pretrained_explains_a_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="not gpt2"):
        GPT.from_pretrained(tmp_path)
