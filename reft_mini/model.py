"""A GPT-2 from scratch: the policy (and, through a value head, the critic) that ReFT fine-tunes.

ReFT (Luong et al., 2024, Sec. 3) starts from a pretrained decoder-only LM, fine-tunes it (warm-up),
then runs PPO in which the *same backbone* carries two heads: the language-model head (the policy
pi_theta) and a scalar value head (the critic V_phi). This file is that network, in GPT-2's shape so
that real GPT-2 weights load into it (``GPT.from_pretrained``):

    tokens (B,T) -> token embedding + learned position embedding -> n_layer x Block -> LayerNorm
                 -> hidden h (B,T,C) -> logits = h @ wte^T   (B,T,V)   (tied input/output embedding)
                                     -> values = head(h)     (B,T)     (scalar per position)

    Block (pre-LN):  x = x + Attention(LN(x));  x = x + MLP(LN(x))

``forward`` returns the hidden states, not the logits: PPO and the warm-up only need log p(token) for
the tokens actually present, which ``reft_mini/kernels.py`` computes from h and wte without ever
materialising the full (B,T,V) logits (that is where the memory goes with GPT-2's 50k vocabulary).

Two more things the RL loop needs from the model:
* padding: batches mix prompts of different lengths. ``attention_mask`` (B,S) says which positions are
  real; pads are never attended to, and positions count only real tokens, so a padded prompt gives the
  same numbers as the prompt alone.
* a KV cache: when sampling, each new token attends to the keys/values of all previous ones. Keeping
  them (instead of re-running the whole prefix every step) makes generation O(T) instead of O(T^2).
  When k samples continue one prompt (RL draws several per question), the prompt's keys/values are
  kept once and shared by its k rows (``KVCache.share_prefix``), as in "cascade" or Hydragen-style
  decoding (Juravsky et al., 2024): each decoding step then reads the prompt once per question instead
  of once per sample, and reading the cache is most of a step's time on a CPU.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 2048  # number of token ids (the reft_mini tokenizer has 2048)
    block_size: int = 256   # longest sequence (prompt + answer) the position table covers
    n_layer: int = 6        # transformer blocks
    n_head: int = 4         # attention heads per block (n_embd must divide by it)
    n_embd: int = 128       # width of the residual stream, C
    dropout: float = 0.0    # on attention weights and residual branches (GPT-2: 0.1; tiny data: 0)
    bias: bool = True       # biases in Linear/LayerNorm, as GPT-2 has


# Named sizes. "demo" is what the CPU default trains; "gpt2" is the 124 M model of the paper's family.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=128),            # unit tests, ~0.05 M
    "demo": dict(n_layer=6, n_head=4, n_embd=128, block_size=384),           # CPU demo, ~1.5 M (2048-token vocabulary)
    "small": dict(n_layer=8, n_head=8, n_embd=256, block_size=384),          # stronger CPU base, ~6.6 M
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),  # 124 M
}


def config_from_preset(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return GPTConfig(**{**PRESETS[name], **overrides})


class KVCache:
    """Keys and values of every layer for the tokens seen so far: k, v of shape (B, H, S_max, D).

    `length` is how many positions are filled; a forward pass with the cache appends T more.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, dtype=torch.float32):
        shape = (batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0

        self.prefix = None  # set by share_prefix: the shared prompts' keys/values and who reads them

    def reorder(self, index: torch.Tensor) -> None:
        """Keep (or repeat) the rows in `index`: drop finished sequences, or copy a prompt to several rows."""
        self.k = [k[index] for k in self.k]
        self.v = [v[index] for v in self.v]
        if self.prefix is not None:
            self.prefix["group"], self.prefix["slot"] = self.prefix["group"][index], self.prefix["slot"][index]

    def share_prefix(self, k: int, prefix_mask: torch.Tensor) -> None:
        """The G rows filled so far are prompts; from now on the batch has G*k rows, k per prompt, and
        every one of them reads its prompt's keys/values from here instead of from a copy of its own.

        prefix_mask (G,P): the prompts' real (not padding) positions. Only what comes after the prompt
        is stored per row. Row r continues prompt group[r] and is sample slot[r] (0..k-1) of it.
        """
        G, P = prefix_mask.shape
        assert self.length == P, "share_prefix is called right after the prompts' forward pass"
        device = prefix_mask.device
        self.prefix = dict(k=[t[:, :, :P] for t in self.k], v=[t[:, :, :P] for t in self.v], mask=prefix_mask,
                           group=torch.arange(G, device=device).repeat_interleave(k),
                           slot=torch.arange(k, device=device).repeat(G), k_per_group=k)
        rest = self.k[0].shape[2] - P                                       # room left for new tokens
        self.k = [t.new_zeros(G * k, t.shape[1], rest, t.shape[3]) for t in self.k]
        self.v = [t.new_zeros(G * k, t.shape[1], rest, t.shape[3]) for t in self.v]


def shared_prefix_attention(q, k, v, attn_mask, cache: KVCache, layer: int) -> torch.Tensor:
    """Attention of A rows over [their prompt (shared, once per group) | their own tokens], (A,H,T,D).

    q, k, v (A,H,T,D): this step's queries, keys, values; attn_mask (A,1,T,P+S): which keys each query
    may see, prompt columns first. The scores against the prompt are one matmul per *group*: the queries
    of a group's rows are gathered into (G,H,k*T,D) and meet the prompt's (G,H,P,D) keys once. One
    softmax over both parts makes this exactly ordinary attention over the concatenated keys.
    """
    pre = cache.prefix
    A, H, T, D = q.shape
    G, P, n_slots = pre["mask"].shape[0], pre["mask"].shape[1], pre["k_per_group"]
    start = cache.length - P                                            # own tokens cached so far
    cache.k[layer][:, :, start:start + T] = k
    cache.v[layer][:, :, start:start + T] = v
    k_own, v_own = cache.k[layer][:, :, :start + T], cache.v[layer][:, :, :start + T]   # (A,H,S,D)
    # Every row's queries into its (group, slot) seat; empty seats (finished rows) stay zero.
    seats = q.new_zeros(G, n_slots, H, T, D)
    seats[pre["group"], pre["slot"]] = q
    seats = seats.permute(0, 2, 1, 3, 4).reshape(G, H, n_slots * T, D)
    s_pre = seats @ pre["k"][layer].transpose(-2, -1)                    # (G,H,k*T,P)
    s_pre = s_pre.view(G, H, n_slots, T, P).permute(0, 2, 1, 3, 4)[pre["group"], pre["slot"]]   # (A,H,T,P)
    s_own = q @ k_own.transpose(-2, -1)                                  # (A,H,T,S)
    scores = torch.cat([s_pre, s_own], -1) / math.sqrt(D)
    w = torch.softmax(scores.masked_fill(~attn_mask, float("-inf")), -1)
    w_pre, w_own = w[..., :P], w[..., P:]
    # Weighted sum over the prompt's values, again one matmul per group.
    seats = w.new_zeros(G, n_slots, H, T, P)
    seats[pre["group"], pre["slot"]] = w_pre
    y_pre = seats.permute(0, 2, 1, 3, 4).reshape(G, H, n_slots * T, P) @ pre["v"][layer]  # (G,H,k*T,D)
    y_pre = y_pre.view(G, H, n_slots, T, D).permute(0, 2, 1, 3, 4)[pre["group"], pre["slot"]]   # (A,H,T,D)
    return y_pre + w_own @ v_own


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_mask, cache: KVCache | None, layer: int):
        B, T, C = x.shape
        # (B,T,3C) -> three (B,H,T,D) tensors, D = C/H
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None and cache.prefix is not None:   # k samples per prompt, prompt stored once
            y = shared_prefix_attention(q, k, v, attn_mask, cache, layer)
            return self.resid_drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        if cache is not None:
            # EXERCISE kv_cache: begin
            # Append this step's keys/values after the cached ones, then attend over all S = past + T.
            start = cache.length
            cache.k[layer][:, :, start:start + T] = k
            cache.v[layer][:, :, start:start + T] = v
            k = cache.k[layer][:, :, :start + T]  # (B,H,S,D)
            v = cache.v[layer][:, :, :start + T]
            # EXERCISE kv_cache: end
        p = self.dropout if self.training else 0.0
        # EXERCISE attention: begin
        if attn_mask is None:
            # No padding and no cache: the plain causal mask (a fused fast path inside PyTorch).
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            # attn_mask (B,1,T,S) bool, True where query t may look at key s (causal and not padding).
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        # EXERCISE attention: end
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-join heads: (B,H,T,D) -> (B,T,C)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        # GPT-2 uses the tanh approximation of GELU; matching it exactly is what makes its weights work.
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, attn_mask, cache, layer):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)  # pre-LN residual blocks
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        # ReFT's critic: a scalar head on the shared backbone (dropout 0.1 + linear in the official code).
        # Supervised warm-up never trains it; PPO re-initialises it (`reset_value_head`).
        self.value_head = nn.Sequential(nn.Dropout(0.1), nn.Linear(config.n_embd, 1))
        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual branch's output projection gets std 0.02/sqrt(2*n_layer),
        # so the residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self.reset_value_head()

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def reset_value_head(self):
        """A fresh critic: zero output, so the first value loss is just the returns' size."""
        lin = self.value_head[1]
        nn.init.zeros_(lin.weight)
        nn.init.zeros_(lin.bias)

    def num_params(self) -> int:
        # Position embeddings count; the tied output embedding is the same tensor as wte, counted once.
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------------------------------------
    def forward(self, idx, attention_mask=None, positions=None, kv_cache: KVCache | None = None):
        """Hidden states after the final LayerNorm, (B,T,C).

        idx:            (B,T) token ids (the new tokens only, when a cache is given)
        attention_mask: (B,S) bool/0-1, S = cached + T: which keys are real tokens (None = all of them)
        positions:      (B,T) position ids; default counts real tokens: cumsum(mask) - 1
        kv_cache:       a KVCache to read earlier keys/values from and append these to
        """
        B, T = idx.shape
        past = kv_cache.length if kv_cache is not None else 0
        S = past + T
        if attention_mask is not None:
            attention_mask = attention_mask.bool()
            assert attention_mask.shape == (B, S), f"attention_mask must be (B, cached+T) = {(B, S)}"
        if positions is None:
            if attention_mask is None:
                positions = torch.arange(past, S, device=idx.device).expand(B, T)
            else:
                # Left padding shifts a prompt right; counting only real tokens undoes the shift.
                positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
        if int(positions.max()) >= self.config.block_size:
            raise ValueError(f"sequence longer than block_size={self.config.block_size}")

        attn_mask = None
        if attention_mask is not None or past > 0:
            # (T,S) causal part: query i (absolute position past+i) sees keys 0..past+i.
            q_idx = torch.arange(past, S, device=idx.device)[:, None]
            k_idx = torch.arange(S, device=idx.device)[None, :]
            causal = k_idx <= q_idx
            if attention_mask is None:
                attn_mask = causal[None, None]                              # (1,1,T,S)
            else:
                # A pad query would have no key left to look at (softmax of nothing = NaN), so every
                # query may always see itself; pad positions' outputs are garbage that masks discard.
                attn_mask = (causal & attention_mask[:, None, :]) | (k_idx == q_idx)
                attn_mask = attn_mask[:, None]                              # (B,1,T,S)

        tr = self.transformer
        x = tr.drop(tr.wte(idx) + tr.wpe(positions))                        # (B,T,C)
        for i, block in enumerate(tr.h):
            x = block(x, attn_mask, kv_cache, i)
        if kv_cache is not None:
            kv_cache.length = S
        return tr.ln_f(x)

    def lm_weight(self) -> torch.Tensor:
        """The output embedding (V,C): tied to the input embedding, as in GPT-2."""
        return self.transformer.wte.weight

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.lm_weight().t()                                     # (B,T,C) -> (B,T,V)

    def values(self, h: torch.Tensor) -> torch.Tensor:
        return self.value_head(h).squeeze(-1)                               # (B,T,C) -> (B,T)

    def new_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = self.lm_weight()
        return KVCache(self.config, batch_size, max_len, p.device, p.dtype)

    # ------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path) -> "GPT":
        """Load a local Hugging Face GPT-2 folder: config.json + model.safetensors (or pytorch_model.bin).

        Weights only: safetensors is read by the tiny parser below and .bin with
        `torch.load(weights_only=True)`, so no pickled code from the checkpoint ever runs.
        """
        folder = Path(path)
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{cfg_file} not found: expected a Hugging Face GPT-2 checkpoint folder")
        hf = json.loads(cfg_file.read_text())
        if hf.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"{cfg_file}: model_type {hf.get('model_type')!r} is not gpt2")
        if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"{cfg_file}: activation {hf['activation_function']!r} is not GPT-2's tanh GELU")
        config = GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                           n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0, bias=True)
        if folder.joinpath("model.safetensors").is_file():
            sd = load_safetensors(folder / "model.safetensors")
        elif folder.joinpath("pytorch_model.bin").is_file():
            sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(f"{folder} has neither model.safetensors nor pytorch_model.bin")
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        model = cls(config)
        own = model.state_dict()
        # GPT-2 stores its Linear layers as "Conv1D" with weight (in, out): transpose into (out, in).
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for name, tensor in own.items():
                if name.startswith("value_head"):
                    continue  # not part of GPT-2: stays freshly initialised
                key = name.removeprefix("transformer.")
                if key not in sd:
                    raise KeyError(f"{folder}: weight {key!r} missing from the checkpoint")
                src = sd[key].t() if key.endswith(transposed) else sd[key]
                if src.shape != tensor.shape:
                    raise ValueError(f"{folder}: {key} has shape {tuple(src.shape)}, expected {tuple(tensor.shape)}")
                tensor.copy_(src.to(tensor.dtype))
        return model


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8,
                       "BOOL": torch.bool}


def load_safetensors(file: str | Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file: 8-byte little-endian header length, a JSON header, then raw bytes.

    The header maps each tensor name to its dtype, shape and byte range in the data section. There is
    no code in the format, which is why it is the safe way to ship weights.
    """
    raw = Path(file).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(data[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out
