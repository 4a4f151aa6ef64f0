"""Data pipeline costs on this CPU (chapter 3.3).

1. Augmentation: ``course_lib.augment.random_affine`` (one random affine per image, the whole
   batch in one ``grid_sample``) against torchvision's ``v2.RandomAffine`` applied image by
   image (the usual per-sample Dataset transform), same kind of transform. Prints the time ratio.
2. Sparse × dense matrix product: CSR time / dense time against density for a few matrix sizes,
   and the density where the ratio crosses 1 (log–log fit of the ratios between 0.1 and 10);
   CSR with int32 indices against int64 indices at 1 % density.
3. Data loading: an epoch of ``data.PNGFolder`` (PNG files decoded with Pillow and resized)
   with 0 and 2 ``DataLoader`` workers (persistent), and of the in-memory ``data.batch_loader``
   with 0 and 2 workers: where workers help and where they only add overhead.

Each ratio is the median of the per-round ratios of the two variants timed in alternation
(``course_lib.timing.interleaved``, the helper the chapters use), so that background load
touches both alike.

    .venv/bin/python benchmarks/data_bench.py [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from course_lib import augment, data, seed_everything, sparse, timing


def augmentation_ratio(images: torch.Tensor, rounds: int) -> tuple[float, float]:
    """Median over interleaved rounds of time(torchvision per image) / time(course_lib
    batched); also the batched time in ms."""
    generator = torch.Generator().manual_seed(0)
    tv = v2.RandomAffine(
        degrees=15,
        translate=(0.1, 0.1),
        scale=(0.9, 1.1),
        interpolation=v2.InterpolationMode.BILINEAR,
    )
    comparison = timing.interleaved(
        {
            "course_lib": lambda: augment.random_affine(
                images, degrees=15.0, scale=(0.9, 1.1), translate=0.1, generator=generator
            ),
            "torchvision": lambda: augment.apply_pipeline(tv, images),
        },
        rounds=3 * rounds,
        warmup=1,
    )
    return comparison.ratio("torchvision", "course_lib"), 1e3 * comparison.medians["course_lib"]


def sparse_crossover(n: int, densities: list[float], rounds: int) -> tuple[float, list[float]]:
    B = torch.randn(n, 64)
    ratios = []
    for density in densities:
        A = sparse.random_sparse_matrix(n, n, density, seed=0)
        csr = sparse.to_sparse(A, "csr")
        comparison = timing.interleaved(
            {"csr": lambda S=csr: S @ B, "dense": lambda D=A: D @ B}, rounds=5 * rounds, warmup=1
        )  # fmt: skip
        ratios.append(comparison.ratio("csr", "dense"))
    r = np.array(ratios)
    near = (r > 0.1) & (r < 10)
    if near.sum() < 2:
        return float("nan"), ratios
    b, a = np.polyfit(np.log(np.array(densities)[near]), np.log(r[near]), deg=1)
    return float(np.exp(-a / b)), ratios


def int32_csr_ratio(n: int, density: float, rounds: int) -> float:
    """Median interleaved ratio time(CSR, int32 indices) / time(CSR, int64 indices)."""
    A = sparse.random_sparse_matrix(n, n, density, seed=0)
    B = torch.randn(n, 64)
    csr64, csr32 = sparse.to_sparse(A, "csr"), sparse.to_sparse(A, "csr", torch.int32)
    comparison = timing.interleaved(
        {"int32": lambda: csr32 @ B, "int64": lambda: csr64 @ B}, rounds=5 * rounds, warmup=1
    )
    return comparison.ratio("int32", "int64")


def loader_ratios(images: int, rounds: int) -> dict[str, float]:
    """Epoch-time ratios 0 workers / 2 workers for a PNG folder and for in-memory tensors
    (> 1: the workers are faster)."""
    photo = data.load_sample_photo()
    g = torch.Generator().manual_seed(0)
    crops = []
    for _ in range(images):
        top = int(torch.randint(0, photo.shape[1] - 128, (1,), generator=g))
        left = int(torch.randint(0, photo.shape[2] - 128, (1,), generator=g))
        crops.append(photo[:, top:top + 128, left:left + 128])
    with tempfile.TemporaryDirectory() as root:
        data.write_png_folder(torch.stack(crops), torch.arange(images) % 2, root,
                              compress_level=1)  # fmt: skip
        folder = data.PNGFolder(root, transform=v2.Resize(64, antialias=True))
        memory = data.Split(torch.stack([folder[i][0] for i in range(images)]),
                            torch.zeros(images, dtype=torch.long))  # fmt: skip
        loaders = {
            "png, 0 workers": DataLoader(folder, batch_size=64),
            "png, 2 workers": DataLoader(folder, batch_size=64, num_workers=2,
                                         persistent_workers=True),  # fmt: skip
            "memory, 0 workers": data.batch_loader(memory, 64),
            "memory, 2 workers": data.batch_loader(memory, 64, num_workers=2,
                                                   persistent_workers=True),  # fmt: skip
        }
        comparison = timing.interleaved(
            {name: (lambda lo=lo: [x for x, _ in lo]) for name, lo in loaders.items()},
            rounds=rounds, warmup=1,
        )
        return {kind: comparison.ratio(f"{kind}, 0 workers", f"{kind}, 2 workers")
                for kind in ("png", "memory")}  # fmt: skip


def measure(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark with command-line arguments ``argv`` (default: ``sys.argv``), print
    its report and return its rows for ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {args.rounds}")
    threads = f"{args.threads} thread{'s' * (args.threads > 1)}"
    rows = []

    digits = data.load_digits_tensors(as_images=True)[0][:256]
    photo = v2.functional.resize(data.load_sample_photo(), [128, 192], antialias=True)
    photos = torch.stack([photo] * 32)
    print("\n1. random affine augmentation: torchvision per image / course_lib batched")
    for name, images in (("256 digits 8×8", digits), ("32 photos 3×128×192", photos)):
        ratio, ms = augmentation_ratio(images, args.rounds)
        print(f"   {name:22s} course_lib {ms:7.2f} ms   ratio {ratio:6.1f}×")
        rows.append({
            "benchmark": "data_bench",
            "compared": f"speed-up, course_lib random_affine (batched), {name} ({threads})",
            "reference": "torchvision v2.RandomAffine per image",
            "ratio": ratio,
            "target": None,
        })  # fmt: skip

    densities = [0.001, 0.003, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.5]
    print("\n2. CSR time / dense time for an n×n by n×64 product")
    print("   density " + " ".join(f"{d:>6.3f}" for d in densities))
    for n in (512, 1024, 2048):
        crossover, ratios = sparse_crossover(n, densities, args.rounds)
        print(
            f"   n={n:<5d} "
            + " ".join(f"{r:6.2f}" for r in ratios)
            + f"   crossover ≈ {crossover:.0%}"
        )
        for density in (0.01, 0.1):
            rows.append({
                "benchmark": "data_bench",
                "compared": f"speed-up, CSR sparse matmul at density {density:.0%}, "
                            f"{n}×{n} by {n}×64 ({threads})",
                "reference": "dense torch.mm",
                "ratio": 1 / ratios[densities.index(density)],
                "target": None,
            })  # fmt: skip
        rows.append({
            "benchmark": "data_bench",
            "compared": f"break-even density (CSR time = dense time), {n}×{n} by {n}×64",
            "reference": "dense torch.mm",
            "ratio": crossover,
            "shown": f"density {crossover:.0%}",
            "target": None,
        })  # fmt: skip
    ratio32 = int32_csr_ratio(1024, 0.01, args.rounds)
    print(f"   CSR int32 / int64 indices, 1024×1024 at 1 %: time ratio {ratio32:.2f}×")
    rows.append({
        "benchmark": "data_bench",
        "compared": f"speed-up, CSR with int32 indices at density 1%, 1024×1024 ({threads})",
        "reference": "CSR with int64 indices",
        "ratio": 1 / ratio32,
        "target": None,
    })  # fmt: skip

    print("\n3. DataLoader epoch: 0 workers / 2 persistent workers (> 1: workers faster)")
    ratios = loader_ratios(256, args.rounds)
    for kind, ratio in ratios.items():
        what = "256 PNG files decoded + resized" if kind == "png" else "256 in-memory images"
        print(f"   {what:32s} {ratio:6.2f}×")
        rows.append({
            "benchmark": "data_bench",
            "compared": f"speed-up, 2 DataLoader workers, {what}",
            "reference": "0 workers (main process)",
            "ratio": ratio,
            "target": None,
        })  # fmt: skip
    return rows


def main() -> None:
    measure()


if __name__ == "__main__":
    main()
