# The plain PyTorch CPU loop that bench/train_bench.ts compares the WGSL trainer against: the same
# SAE training step as SAELens (standard: MSE + L1 weighted by decoder norms; topk: top-k with
# decoder-norm rescaling), clip_grad_norm_(1.0) and Adam, at the same shape. Prints one JSON line.
# Usage: python3 bench/train_torch.py ARCH BATCH D_IN D_SAE K STEPS [THREADS]
import json, os, sys, time
import torch

# Threads: the 7th argument (default every core the process may run on, as lavapipe uses).
torch.set_num_threads(int(sys.argv[7]) if len(sys.argv) > 7 else len(os.sched_getaffinity(0)))

arch, B, D, S, K, steps = sys.argv[1], *map(int, sys.argv[2:7])
torch.manual_seed(0)
W_dec = torch.nn.Parameter(torch.randn(S, D) * 0.1 / D ** 0.5)
W_enc = torch.nn.Parameter(W_dec.detach().T.clone())
b_enc = torch.nn.Parameter(torch.zeros(S))
b_dec = torch.nn.Parameter(torch.zeros(D))
params = [b_dec, W_dec, W_enc, b_enc]
opt = torch.optim.Adam(params, lr=3e-4)
x = torch.randn(B, D)

def step():
    h = (x - b_dec) @ W_enc + b_enc
    n = W_dec.norm(dim=1)
    if arch == "topk":
        h = h * n
        v, i = torch.topk(h, K, dim=-1, sorted=False)
        acts = torch.zeros_like(h).scatter(-1, i, v.relu())
        out = (acts / n) @ W_dec + b_dec
        loss = (out - x).pow(2).sum(-1).mean()
    else:
        acts = torch.relu(h)
        out = acts @ W_dec + b_dec
        loss = (out - x).pow(2).sum(-1).mean() + (acts * n).norm(p=1, dim=-1).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()

for _ in range(3):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
dt = (time.perf_counter() - t0) / steps
print(json.dumps({"arch": arch, "ms_per_step": dt * 1e3, "tokens_per_s": B / dt,
                  "threads": torch.get_num_threads(), "torch": torch.__version__}))
