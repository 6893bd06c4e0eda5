"""PyTorch peer of bench/gpt2.c: the same GPT-2 124M measurements in PyTorch.

bench/gpt2 runs this script once per measurement, as a subprocess, with PyTorch set up at its
best on this machine: Debian's python3-torch on OpenMP OpenBLAS, LD_PRELOAD=libtcmalloc,
OMP_WAIT_POLICY=PASSIVE and 2 threads (torch.set_num_threads). It can also be run by hand:

    python3 bench/peers/gpt2.py train T STEPS [THREADS] [bf16]   # B=4, AdamW, random tokens
    python3 bench/peers/gpt2.py gen PROMPT NEW REPS [THREADS] [bf16]

It prints machine-readable "key value" lines on stdout, which bench/gpt2 parses: `step_s` (one
per timed training step, after one warm-up step, with `step_cpu_s`, `step_sys_s` and
`step_faults` from getrusage), `loss`, `prefill_ms` and `decode_s` (one per
repetition), `params`, `threads`. An "error MESSAGE" line reports a missing torch.

The model is a minimal GPT-2 written here (no transformers package): learned positions,
pre-norm blocks of LayerNorm, fused qkv Linear, causal attention written out (q k^T, mask,
softmax, v: PyTorch 1.13 has no scaled_dot_product_attention), tanh GELU MLP, lm_head tied to
wte, initialisation as nanoGPT. The same choices as Ember's GPT-2: AdamW(lr 6e-4, betas (0.9,
0.95), eps 1e-8, weight decay 0.1 on 2-D weights only), no gradient clipping, dropout 0,
forward + backward + step + zero_grad(set_to_none) per training step. Generation is greedy with
a preallocated KV cache: a prefill of PROMPT random tokens then NEW single-token steps.
With "bf16" the training step's forward and loss run under torch.autocast("cpu",
dtype=torch.bfloat16) (PyTorch's bf16 mixed precision: f32 master weights, matmuls on bf16
operands; backward follows the autocast dtypes), the peer of Ember's EM_BF16 matmul precision.
With "bf16" generation runs the model after model.to(torch.bfloat16) with a bf16 KV cache (every
parameter, activation and cache entry in bf16), the peer of Ember's em_model_to_dtype(EM_BF16).
"""
import math
import resource
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # bench/gpt2 prints n/a
    print("error torch not importable: %s" % e)
    sys.exit(0)

V, BLOCK, L, NH, C = 50257, 1024, 12, 12, 768


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def attn(self, x, cache=None, pos=0):
        B, T, _ = x.shape
        HS = C // NH
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, NH, HS).transpose(1, 2)  # (B, NH, T, HS)
        k = k.view(B, T, NH, HS).transpose(1, 2)
        v = v.view(B, T, NH, HS).transpose(1, 2)
        if cache is not None:  # write the new keys and values, attend over the filled prefix
            kc, vc = cache
            kc[:B, :, pos:pos + T] = k
            vc[:B, :, pos:pos + T] = v
            k, v = kc[:B, :, :pos + T], vc[:B, :, :pos + T]
        Tk = k.shape[2]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))  # (B, NH, T, Tk)
        if T > 1:  # causal, bottom-right aligned (query i sits at Tk - T + i)
            mask = torch.ones(T, Tk, dtype=torch.bool).tril(Tk - T)
            att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)

    def forward(self, x, cache=None, pos=0):
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(BLOCK, C)
        self.h = nn.ModuleList([Block() for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        for name, p in self.named_parameters():  # nanoGPT's init
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif "ln" not in name:
                nn.init.zeros_(p)

    def forward(self, idx, targets=None, caches=None, pos=0, last_only=False):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(pos, pos + T))
        for i, blk in enumerate(self.h):
            x = blk(x, caches[i] if caches is not None else None, pos)
        if last_only:  # generation needs the last position's logits only (as Ember's emn_prefill)
            x = x[:, -1:]
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied lm_head, (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, V), targets.view(-1))


def train(T, steps, bf16=False):
    B = 4
    torch.manual_seed(1337)
    m = GPT2()
    print("params %d" % sum(p.numel() for p in m.parameters()))
    decay = [p for p in m.parameters() if p.dim() >= 2]
    no_decay = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    for i in range(steps + 1):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = m(x, y)
        else:
            _, loss = m(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if i > 0:  # step 0 is the warm-up (allocates the optimizer state)
            print("step_s %.6f" % dt)
            print("step_cpu_s %.6f" % (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime))
            print("step_sys_s %.6f" % (r1.ru_stime - r0.ru_stime))
            print("step_faults %d" % (r1.ru_minflt - r0.ru_minflt), flush=True)
    print("loss %.6f" % loss.item())
    print("steps_run %d" % (steps + 1))


@torch.inference_mode()
def gen(prompt, new, reps, bf16=False):
    torch.manual_seed(1337)
    m = GPT2().eval()
    dt = torch.float32
    if bf16:
        m = m.to(torch.bfloat16)
        dt = torch.bfloat16
    HS = C // NH
    caches = [(torch.zeros(1, NH, prompt + new, HS, dtype=dt), torch.zeros(1, NH, prompt + new, HS, dtype=dt))
              for _ in range(L)]
    idx = torch.randint(0, V, (1, prompt))
    for r in range(reps + 1):  # rep 0 warms up
        t0 = time.perf_counter()
        logits, _ = m(idx, caches=caches, pos=0, last_only=True)
        t1 = time.perf_counter()
        tok = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        out = []
        for i in range(new):
            logits, _ = m(tok, caches=caches, pos=prompt + i)
            tok = logits[:, -1].argmax(-1, keepdim=True)
            out.append(int(tok))
        t2 = time.perf_counter()
        if r > 0:
            print("prefill_ms %.3f" % ((t1 - t0) * 1e3))
            print("decode_s %.6f" % (t2 - t1), flush=True)
    print("tokens %s" % ",".join(str(t) for t in out[:8]))


def main(argv):
    if len(argv) < 3 or argv[1] not in ("train", "gen"):
        print("error usage: gpt2.py train T STEPS [THREADS] [bf16] | gen PROMPT NEW REPS [THREADS] [bf16]")
        return 2
    nargs = 3 if argv[1] == "train" else 4
    threads = int(argv[nargs + 1]) if len(argv) > nargs + 1 else 2
    torch.set_num_threads(threads)
    print("threads %d" % torch.get_num_threads())
    try:  # which BLAS and malloc the process really loaded (LD_LIBRARY_PATH, LD_PRELOAD)
        maps = open("/proc/self/maps").read()
        libs = sorted({l.split()[-1] for l in maps.splitlines() if "openblas" in l or "tcmalloc" in l})
        print("libs %s" % ",".join(libs))
    except OSError:
        pass
    if argv[1] == "train":
        train(int(argv[2]), int(argv[3]), len(argv) > 5 and argv[5] == "bf16")
    else:
        gen(int(argv[2]), int(argv[3]), int(argv[4]), len(argv) > 6 and argv[6] == "bf16")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
