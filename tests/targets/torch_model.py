"""A small PyTorch service on the CPU, for the torch integration tests: the main thread trains a
little network a step at a time (Net.forward, train_step) and answers an inference (infer)
every tick; a second thread runs a slow inference (slow_infer, about two seconds) over and over.
Every result is checked against what it must be, so a change in behaviour shows as an ERROR line.

Usage: torch_model.py READY [own|cuda]
  own: the program profiles itself, with torch.profiler, from the start and never stops (fp
  must refuse to profile and leave that profiler alone). Each tick it checks the profiler is
  still its own and still running.
  cuda: the models and data live on the GPU (bench/torch_cuda_check.sh, on a GPU machine).
Progress: "tick N loss=L" from the main thread, "slow N" from the slow thread.
"""
import sys
import threading
import time

import torch

import fptarget

torch.manual_seed(0)
torch.set_num_threads(1)
MODE = sys.argv[2] if len(sys.argv) > 2 else ""
DEVICE = "cuda" if MODE == "cuda" else "cpu"


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Encoder(torch.nn.Module):
    """The slow thread's model (its own class, so profiling Net never catches the slow thread)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 256)
        self.fc2 = torch.nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


MODEL = Net().to(DEVICE)
OPTIMIZER = torch.optim.SGD(MODEL.parameters(), lr=0.01)
INPUTS = torch.randn(32, 64, device=DEVICE)
TARGETS = torch.randint(0, 10, (32,), device=DEVICE)
SLOW_MODEL = Encoder().to(DEVICE)
OWN = None


def train_step(x, y):
    OPTIMIZER.zero_grad()
    loss = torch.nn.functional.cross_entropy(MODEL(x), y)
    loss.backward()
    OPTIMIZER.step()
    return loss.item()


def infer(x):
    with torch.no_grad():
        return MODEL(x).argmax(dim=1)


def slow_infer(seconds):
    """Inference in a loop for about `seconds`; returns how many rounds it made."""
    deadline = time.monotonic() + seconds
    rounds = 0
    with torch.no_grad():
        while time.monotonic() < deadline:
            out = SLOW_MODEL(torch.randn(256, 64, device=DEVICE))
            if out.shape != (256, 10):
                fptarget.error("slow_infer shape %s" % (tuple(out.shape),))
            rounds += 1
    return rounds


def batches(n):
    """A generator: fp refuses to profile it."""
    for _ in range(n):
        yield torch.randn(4, 64)


async def serve(x):
    """A coroutine: fp refuses to profile it."""
    return infer(x)


def slow_loop():
    n = 0
    while True:
        n += 1
        if slow_infer(2.0) < 1:
            fptarget.error("slow_infer made no round")
        fptarget.report("slow %d" % n)


def main():
    global OWN
    own = MODE == "own"
    if own:
        OWN = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        OWN.start()
    threading.Thread(target=slow_loop, name="slow", daemon=True).start()
    fptarget.announce(sys.argv[1], own=int(own), device=DEVICE)
    tick = 0
    while True:
        tick += 1
        loss = train_step(INPUTS, TARGETS)
        if not (loss == loss) or loss <= 0:
            fptarget.error("loss is %r" % loss)
        pred = infer(INPUTS)
        if pred.shape != (32,) or int(pred.min()) < 0 or int(pred.max()) > 9:
            fptarget.error("infer gave %r" % (pred,))
        if own and (OWN.profiler is None or not torch.autograd.profiler._is_profiler_enabled):
            fptarget.error("the program's own profiler stopped")
        fptarget.report("tick %d loss=%.4f" % (tick, loss))
        time.sleep(0.05)


if __name__ == "__main__":
    main()
