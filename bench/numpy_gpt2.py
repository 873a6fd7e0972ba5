"""The numpy yardstick of bench/numpy_bench.ts: a plain float32 GPT-2 forward in numpy (OpenBLAS
or whatever BLAS numpy was built with) over the same safetensors weights hooklens loads.

Run by the bench as a subprocess; it reads one command a line on stdin and answers one JSON line on
stdout, so that the bench can interleave its own calls with numpy's in one run:

  {"tokens": [[...]]}               load these token ids [1][P] for the next runs; answers {"ok": true}
  {"run": n, "last": false}         n forwards (the last position's logits only with "last": true);
                                    answers {"ms": [..]} (wall ms of each forward)
  {"logits": true}                  one forward; answers {"rows": [[..], ..]}, the logits of the
                                    first and last positions (to check both compute the same model)

The weights' dtype on disk (float16 for the demo model) is converted to float32 once at load.
"""

import json
import struct
import sys
import time

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    kinds = {"F16": np.float16, "F32": np.float32, "BF16": None}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        kind = kinds[t["dtype"]]
        if kind is None:  # bfloat16: the high half of a float32
            raw = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=kind)
        out[name] = arr.astype(np.float32).reshape(t["shape"])
    return out


def main():
    model_dir = sys.argv[1]
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = load_safetensors(f"{model_dir}/model.safetensors")
    w = {k.removeprefix("transformer."): v for k, v in w.items()}
    L, H, eps = cfg["n_layer"], cfg["n_head"], np.float32(cfg["layer_norm_epsilon"])
    wte, wpe = w["wte.weight"], w["wpe.weight"]
    wu = np.ascontiguousarray(w["lm_head.weight"] if "lm_head.weight" in w else wte)
    D = wte.shape[1]
    E = D // H
    scale = np.float32(1 / np.sqrt(E))
    c = np.float32(np.sqrt(2 / np.pi))

    def ln(x, g, b):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * g + b

    def gelu(x):
        return np.float32(0.5) * x * (1 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))

    def forward(tokens, last):
        P = tokens.shape[0]
        mask = np.triu(np.full((P, P), -np.inf, dtype=np.float32), 1)
        h = wte[tokens] + wpe[:P]
        for i in range(L):
            p = f"h.{i}."
            qkv = ln(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"]) @ w[p + "attn.c_attn.weight"]
            qkv += w[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, j * D:(j + 1) * D].reshape(P, H, E).transpose(1, 0, 2) for j in range(3))
            s = q @ k.transpose(0, 2, 1) * scale + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            z = (s @ v).transpose(1, 0, 2).reshape(P, D)
            h = h + z @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            m = gelu(ln(h, w[p + "ln_2.weight"], w[p + "ln_2.bias"]) @ w[p + "mlp.c_fc.weight"]
                     + w[p + "mlp.c_fc.bias"])
            h = h + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        x = ln(h[-1:] if last else h, w["ln_f.weight"], w["ln_f.bias"])
        return x @ wu.T

    tokens = np.zeros(1, dtype=np.int64)
    for line in sys.stdin:
        cmd = json.loads(line)
        if "tokens" in cmd:
            tokens = np.asarray(cmd["tokens"][0], dtype=np.int64)
            reply = {"ok": True}
        elif "run" in cmd:
            ms = []
            for _ in range(int(cmd["run"])):
                t0 = time.perf_counter()
                forward(tokens, bool(cmd.get("last")))
                ms.append((time.perf_counter() - t0) * 1000)
            reply = {"ms": ms}
        elif "logits" in cmd:
            out = forward(tokens, False)
            reply = {"rows": [out[0].tolist(), out[-1].tolist()]}
        else:
            reply = {"error": f"unknown command {line.strip()}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
