"""Training rate (examples/s) of the speed-run net's ingredients, bare loop, interleaved rounds."""
import json, statistics, time, torch
from torch import nn
from d2lexp.models.vgg import VGG
torch.manual_seed(0)
ARCH = [[2, 32], [2, 64], [2, 128]]
def make(pool_first):
    return VGG(ARCH, input_size=28, hidden=0, batch_norm=True, pool_first=pool_first).to(memory_format=torch.channels_last)
def rate(net, opt, x, y, bf16, secs=4.0):
    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(net(x), y, label_smoothing=0.1)
        opt.zero_grad(); loss.backward(); opt.step()
    for _ in range(2): step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < secs: step(); n += x.shape[0]
    return n / (time.perf_counter() - t0)
x0 = torch.randn(256, 1, 28, 28); y = torch.randint(0, 10, (256,))
inputs = {"nchw-strided input (old)": x0.contiguous(memory_format=torch.channels_last), "channels-last input": x0.to(memory_format=torch.channels_last)}
cases = [(pf, bf16, k) for pf in (False, True) for bf16 in (False, True) for k in inputs]
nets = {pf: make(pf) for pf in (False, True)}
opts = {pf: torch.optim.AdamW(nets[pf].parameters(), 0.01) for pf in nets}
res = {c: [] for c in cases}
for r in range(3):
    for c in cases:
        pf, bf16, k = c
        res[c].append(rate(nets[pf], opts[pf], inputs[k], y, bf16))
out = []
for (pf, bf16, k), v in res.items():
    row = {"net": "pool_first" if pf else "vgg_bn_medium (pool last)", "precision": "bf16-mixed" if bf16 else "32", "input": k, "median": round(statistics.median(v)), "rounds": [round(a) for a in v]}
    print(row); out.append(row)
json.dump(out, open("/work/notes/speedrun/rates.json", "w"), indent=1)
