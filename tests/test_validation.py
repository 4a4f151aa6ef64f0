"""Bad input is refused with a message that names the argument and says what is allowed.

Every public function and class of ``course_lib`` checks its arguments (issue 9, "Reliability").
Each case below calls one of them with one bad argument and asserts that it raises
``ValueError`` or ``TypeError`` whose message contains both the argument's name and the
allowed values or range, in the house form ``<arg> must be <allowed>, got <value>``.

Not validated, on purpose: functions without arguments (``available_devices``, ``hardware``,
``default_progress``, ``Net``); the helpers of ``plot`` (matplotlib reports what it cannot
draw); ``parallel.main``, whose command line argparse checks; the NamedTuple records; and a
few inputs PyTorch already reports clearly — a ``generator`` of the wrong type,
``train_data_parallel``'s ``device``, class indices out of range in the distillation loss
(checking them would synchronise every batch) and a state dict that does not match the model
in ``load_checkpoint`` (torch lists the mismatched keys).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from course_lib import (
    augment,
    compress,
    data,
    distill,
    environment,
    models,
    online,
    optim,
    parallel,
    prune,
    recipes,
    scaling,
    source,
    sparse,
    timing,
    train,
)
from course_lib.device import select_device
from course_lib.seed import seed_everything

# --- small inputs, built fresh for every case -----------------------------------------------


def _param():
    return [nn.Parameter(torch.ones(2))]


def _mlp():
    return models.MLP(in_features=4, hidden=(3,), num_classes=2)


def _images(*shape, dtype=torch.float32):
    return torch.rand(*shape).to(dtype)


def _split(n=8):
    return data.Split(torch.randn(n, 4), torch.arange(n) % 2)


def _loader(n=8):
    return data.batch_loader(_split(n), batch_size=4)


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1)


def _fit(**overrides):
    model = _mlp()
    kwargs = dict(
        model=model,
        train_loader=_loader(),
        val_loader=None,
        optimizer=_sgd(model),
        loss_fn=nn.functional.cross_entropy,
        epochs=1,
        device="cpu",
        progress=False,
    )
    kwargs.update(overrides)
    return train.fit(**kwargs)


def _distill_loss(**overrides):
    kwargs = dict(
        student_logits=torch.randn(4, 3),
        teacher_logits=torch.randn(4, 3),
        targets=torch.zeros(4, dtype=torch.long),
        temperature=2.0,
        alpha=0.5,
    )
    kwargs.update(overrides)
    return distill.distillation_loss(**kwargs)


def _train_student(teacher_classes=2, **overrides):
    student = _mlp()
    teacher = models.MLP(in_features=4, hidden=(3,), num_classes=teacher_classes)
    kwargs = dict(
        student=student,
        teacher=teacher,
        train_loader=_loader(),
        val_loader=None,
        optimizer=_sgd(student),
        epochs=1,
        device="cpu",
        progress=False,
    )
    kwargs.update(overrides)
    return distill.train_student(**kwargs)


def _ddp(**overrides):
    kwargs = dict(
        model=_mlp(),
        dataset=TensorDataset(*_split()),
        epochs=1,
        global_batch_size=4,
        lr=0.1,
    )
    kwargs.update(overrides)
    return parallel.train_data_parallel(**kwargs)


# --- the cases: (call, exception, regex naming the argument and what is allowed) ----------

V, T = ValueError, TypeError

CASES = [
    # optim (chapter 3.1)
    ("optim-GD-negative-lr", lambda: optim.GD(_param(), lr=-0.1), V,
     r"lr must be a number >= 0, got -0\.1"),
    ("optim-GD-lr-str", lambda: optim.GD(_param(), lr="fast"), T,
     r"lr must be a number >= 0, got str"),
    ("optim-SGD-lr-nan", lambda: optim.SGD(_param(), lr=float("nan")), V,
     r"lr must be a finite number >= 0, got nan"),
    ("optim-SGD-negative-momentum", lambda: optim.SGD(_param(), lr=0.1, momentum=-0.5), V,
     r"momentum must be a number >= 0, got -0\.5"),
    ("optim-SGD-dampening-above-1", lambda: optim.SGD(_param(), lr=0.1, dampening=1.5), V,
     r"dampening must be a number in \[0, 1\], got 1\.5"),
    ("optim-SGD-nesterov-without-momentum", lambda: optim.SGD(_param(), lr=0.1, nesterov=True),
     V, r"nesterov=True needs momentum > 0 and dampening == 0"),
    ("optim-SGD-nesterov-with-dampening",
     lambda: optim.SGD(_param(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), V,
     r"nesterov=True needs momentum > 0 and dampening == 0, got momentum=0\.9, dampening=0\.1"),
    ("optim-SGD-nesterov-not-bool", lambda: optim.SGD(_param(), lr=0.1, nesterov=1), T,
     r"nesterov must be a bool, got int"),
    ("optim-SGD-negative-lr", lambda: optim.SGD(_param(), lr=-1.0), V,
     r"lr must be a number >= 0, got -1\.0"),
    ("optim-SGD-negative-weight_decay", lambda: optim.SGD(_param(), lr=0.1, weight_decay=-1e-4),
     V, r"weight_decay must be a number >= 0, got -0\.0001"),
    ("optim-Adam-negative-lr", lambda: optim.Adam(_param(), lr=-1e-3), V,
     r"lr must be a number >= 0, got -0\.001"),
    ("optim-Adam-negative-weight_decay", lambda: optim.Adam(_param(), weight_decay=-0.1), V,
     r"weight_decay must be a number >= 0, got -0\.1"),
    ("optim-Adam-beta1-is-1", lambda: optim.Adam(_param(), betas=(1.0, 0.999)), V,
     r"betas\[0\] must be a number in \[0, 1\), got 1\.0"),
    ("optim-Adam-beta2-negative", lambda: optim.Adam(_param(), betas=(0.9, -0.1)), V,
     r"betas\[1\] must be a number in \[0, 1\), got -0\.1"),
    ("optim-Adam-betas-not-a-pair", lambda: optim.Adam(_param(), betas=(0.9,)), T,
     r"betas must be a pair \(beta1, beta2\)"),
    ("optim-Adam-eps-zero", lambda: optim.Adam(_param(), eps=0.0), V,
     r"eps must be a number > 0, got 0"),
    ("optim-Adam-amsgrad-not-bool", lambda: optim.Adam(_param(), amsgrad="yes"), T,
     r"amsgrad must be a bool"),
    ("optim-optimize_2d-negative-steps",
     lambda: optim.optimize_2d(optim.quadratic, (1.0, 1.0), lambda p: optim.GD(p, lr=0.1), -1),
     V, r"steps must be an int >= 0, got -1"),
    ("optim-optimize_2d-start-3d",
     lambda: optim.optimize_2d(optim.quadratic, (1, 2, 3), lambda p: optim.GD(p, lr=0.1)), V,
     r"start must be a point \(x, y\)"),
    ("optim-optimize_2d-negative-noise",
     lambda: optim.optimize_2d(optim.quadratic, (1.0, 1.0), lambda p: optim.GD(p, lr=0.1),
                               grad_noise=-1.0), V, r"grad_noise must be a number >= 0, got -1\.0"),
    ("optim-optimize_2d-make_optimizer-returns-params",
     lambda: optim.optimize_2d(optim.quadratic, (1.0, 1.0), lambda p: p), T,
     r"make_optimizer\(params\) must be a torch.optim.Optimizer, got list"),
    ("optim-quadratic-a-infinite",
     lambda: optim.quadratic(torch.tensor(1.0), torch.tensor(1.0), a=float("inf")), V,
     r"a must be a finite number, got inf"),
    # prune (chapter 3.2)
    ("prune-amount-above-1", lambda: prune.magnitude_prune(_mlp(), 1.5), V,
     r"amount must be a number in \[0, 1\], got 1\.5"),
    ("prune-amount-negative", lambda: prune.magnitude_prune(_mlp(), -0.1), V,
     r"amount must be a number in \[0, 1\], got -0\.1"),
    ("prune-amount-str", lambda: prune.magnitude_prune(_mlp(), "half"), T,
     r"amount must be a number in \[0, 1\]"),
    ("prune-bad-scope", lambda: prune.magnitude_prune(_mlp(), 0.5, scope="local"), V,
     r"scope must be one of \['global', 'layer'\], got 'local'"),
    ("prune-remove_neurons-amount", lambda: prune.remove_neurons(_mlp(), 2.0), V,
     r"amount must be a number in \[0, 1\], got 2\.0"),
    ("prune-remove_neurons-importance",
     lambda: prune.remove_neurons(_mlp(), 0.5, importance="gradient"), V,
     r"importance must be one of \['l1', 'activation'\], got 'gradient'"),
    ("prune-activation-importance-without-inputs",
     lambda: prune.neuron_importance(_mlp(), importance="activation"), T,
     r"inputs .*must be a torch.Tensor, got NoneType"),
    ("prune-include_bias-not-bool", lambda: prune.neuron_importance(_mlp(), include_bias=1), T,
     r"include_bias must be a bool, got int"),
    ("prune-remove_neurons-no-prunable-layer",
     lambda: prune.remove_neurons(nn.Sequential(nn.ReLU(), nn.Flatten()), 0.5), V,
     r"model must contain at least one prunable layer"),
    ("prune-remove_neurons-not-sequential", lambda: prune.remove_neurons(models.Net(), 0.5), T,
     r"model must be an nn.Sequential"),
    ("prune-schedule-zero-rounds", lambda: prune.sparsity_schedule(0.5, 0), V,
     r"rounds must be an int >= 1, got 0"),
    ("prune-schedule-start-above-target", lambda: prune.sparsity_schedule(0.5, 3, start=0.8), V,
     r"start must be < 1 and <= target"),
    ("prune-iterative-target", lambda: prune.iterative_prune(_mlp(), 1.2, 3, lambda m: None), V,
     r"target must be a number in \[0, 1\], got 1\.2"),
    ("prune-iterative-fine_tune-not-callable", lambda: prune.iterative_prune(_mlp(), 0.5, 2, 3),
     T, r"fine_tune must be callable"),
    ("prune-set_mask-wrong-shape", lambda: prune.set_mask(nn.Linear(3, 4), torch.ones(3, 4)), V,
     r"mask must be a tensor of shape \(4, 3\)"),
    ("prune-set_mask-not-binary", lambda: prune.set_mask(nn.Linear(3, 4), torch.full((4, 3), 2.0)),
     V, r"mask must hold only 0 and 1"),
    ("prune-get_mask-no-weight", lambda: prune.get_mask(nn.ReLU()), T,
     r"module must be a layer with a weight"),
    ("prune-no-prunable-layer", lambda: prune.prunable_layers(nn.Sequential(nn.ReLU())), V,
     r"model must contain at least one prunable layer"),
    # distill (chapter 3.2)
    ("distill-temperature-zero", lambda: distill.softmax_with_temperature(torch.randn(2, 3), 0), V,
     r"temperature must be a number > 0, got 0"),
    ("distill-temperature-negative", lambda: _distill_loss(temperature=-1.0), V,
     r"temperature must be a number > 0, got -1"),
    ("distill-alpha-above-1", lambda: _distill_loss(alpha=1.5), V,
     r"alpha must be a number in \[0, 1\], got 1\.5"),
    ("distill-alpha-negative", lambda: _distill_loss(alpha=-0.1), V,
     r"alpha must be a number in \[0, 1\], got -0\.1"),
    ("distill-integer-logits",
     lambda: distill.softmax_with_temperature(torch.arange(6).reshape(2, 3), 2.0), T,
     r"logits must be a floating-point tensor"),
    ("distill-teacher-student-class-count", lambda: _distill_loss(teacher_logits=torch.randn(4, 5)),
     V, r"teacher_logits must have the shape of student_logits .*same classes"),
    ("distill-float-targets", lambda: _distill_loss(targets=torch.zeros(4)), T,
     r"targets must be an integer tensor of class indices"),
    ("distill-targets-none-with-alpha-below-1", lambda: _distill_loss(targets=None), V,
     r"targets must be a tensor of class indices unless alpha = 1"),
    ("distill-student-logits-1d",
     lambda: _distill_loss(student_logits=torch.randn(4), teacher_logits=torch.randn(4)), V,
     r"student_logits must have shape \(batch, classes\)"),
    ("distill-empty-ensemble", lambda: distill.Ensemble([]), V,
     r"models must hold at least one nn.Module"),
    ("distill-ensemble-non-module", lambda: distill.Ensemble([_mlp(), 3]), T,
     r"models must hold only nn.Module"),
    ("distill-train_student-class-mismatch", lambda: _train_student(teacher_classes=5), V,
     r"teacher_logits must have the shape of student_logits .*same classes"),
    ("distill-train_student-zero-epochs", lambda: _train_student(epochs=0), V,
     r"epochs must be an int >= 1, got 0"),
    # data (chapters 1 and 3.3)
    ("data-batch_size-zero", lambda: data.batch_loader(_split(), batch_size=0), V,
     r"batch_size must be an int >= 1, got 0"),
    ("data-batch_size-negative", lambda: data.batch_loader(_split(), batch_size=-4), V,
     r"batch_size must be an int >= 1, got -4"),
    ("data-num_workers-negative", lambda: data.batch_loader(_split(), num_workers=-1), V,
     r"num_workers must be an int >= 0, got -1"),
    ("data-pin_memory-not-bool", lambda: data.make_loaders(data.load_digits_split(),
                                                           pin_memory="yes"), T,
     r"pin_memory must be a bool"),
    ("data-batch_loader-empty-split", lambda: data.batch_loader(_split(0)), V,
     r"X and y must hold at least one sample"),
    ("data-eval_batch_size-zero",
     lambda: data.make_loaders(data.load_digits_split(), eval_batch_size=0), V,
     r"eval_batch_size must be an int >= 1, got 0"),
    ("data-val_size-above-1", lambda: data.train_val_test_split(*_split(), val_size=1.5), V,
     r"val_size must be a (finite )?number in \(0, 1\), got 1\.5"),
    ("data-test_size-zero", lambda: data.train_val_test_split(*_split(), test_size=0.0), V,
     r"test_size must be a (finite )?number in \(0, 1\), got 0\.0"),
    ("data-fractions-sum-to-1",
     lambda: data.train_val_test_split(*_split(), val_size=0.5, test_size=0.5), V,
     r"val_size \+ test_size must be < 1"),
    ("data-split-empty-dataset", lambda: data.train_val_test_split(*_split(0)), V,
     r"X and y must hold at least one sample"),
    ("data-split-length-mismatch",
     lambda: data.train_val_test_split(torch.randn(10, 2), torch.zeros(9, dtype=torch.long)), V,
     r"X and y must have the same length, got 10 and 9"),
    ("data-split-X-list", lambda: data.train_val_test_split([[0.0]] * 10, torch.zeros(10)), T,
     r"X must be a torch.Tensor"),
    ("data-split-negative-seed", lambda: data.train_val_test_split(*_split(20), seed=-1), V,
     r"seed must be an int in \[0, 2\*\*32 - 1\], got -1"),
    ("data-subsample-fraction-zero", lambda: data.subsample_indices(torch.arange(10), 0.0), V,
     r"fraction must be a (finite )?number in \(0, 1\], got 0\.0"),
    ("data-subsample-fraction-above-1", lambda: data.subsample(*_split(), fraction=1.5), V,
     r"fraction must be a (finite )?number in \(0, 1\], got 1\.5"),
    ("data-subsample-labels-2d", lambda: data.subsample_indices(torch.zeros(4, 2), 0.5), V,
     r"y must be a 1-D tensor, got shape \(4, 2\)"),
    ("data-sample-photo-name", lambda: data.load_sample_photo("cat.jpg"), V,
     r"name must be one of \['china.jpg', 'flower.jpg'\], got 'cat.jpg'"),
    ("data-mnist1d-num_samples", lambda: data.load_mnist1d(num_samples=5), V,
     r"num_samples must be an int >= 20, got 5"),
    ("data-as_images-not-bool", lambda: data.load_digits_tensors(as_images="yes"), T,
     r"as_images must be a bool"),
    # scaling, sparse, online (chapter 3.3)
    ("scaling-standardize-empty", lambda: scaling.Standardize().fit(torch.zeros(0, 3)), V,
     r"X must hold at least one sample"),
    ("scaling-standardize-1d", lambda: scaling.Standardize().fit(torch.zeros(5)), V,
     r"X must have shape \(n_samples, n_features, \.\.\.\)"),
    ("scaling-minmax-range-reversed", lambda: scaling.MinMaxScale((1.0, 0.0)), V,
     r"feature_range must be a pair \(a, b\) with a < b, got \(1\.0, 0\.0\)"),
    ("sparse-to_sparse-unknown-layout", lambda: sparse.to_sparse(torch.eye(3), layout="bsr"), V,
     r"layout must be one of \['coo', 'csr'\], got 'bsr'"),
    ("sparse-to_sparse-3d", lambda: sparse.to_sparse(torch.zeros(2, 2, 2)), V,
     r"X must be a 2-D tensor, got shape \(2, 2, 2\)"),
    ("sparse-random_sparse-density", lambda: sparse.random_sparse_matrix(4, 4, 1.5), V,
     r"density must be a (finite )?number in \[0, 1\], got 1\.5"),
    ("sparse-random_sparse-rows", lambda: sparse.random_sparse_matrix(0, 4, 0.5), V,
     r"rows must be an int >= 1, got 0"),
    ("sparse-matmul-incompatible", lambda: sparse.matmul_seconds(torch.eye(3), torch.eye(4)), V,
     r"A and B must be compatible, A.shape\[1\] == B.shape\[0\]"),
    ("online-torchvision-unknown-name", lambda: online.load_torchvision_dataset("imagenet"), V,
     r"name must be one of \['cifar10', 'fashion_mnist', 'mnist'\], got 'imagenet'"),
    ("online-torchvision-timeout", lambda: online.load_torchvision_dataset("mnist", timeout=0), V,
     r"timeout must be a (finite )?number > 0, got 0"),
    ("online-read_cifar10-root", lambda: online.read_cifar10(3), T,
     r"root must be a str or path-like folder, got int"),
    # device and seed (chapter 1)
    ("device-unknown-tpu", lambda: select_device("tpu"), V,
     r"prefer must name a device in \('cuda', 'mps', 'cpu'\), got 'tpu'"),
    ("device-wrong-type", lambda: select_device(3), T,
     r"prefer must be a str, torch.device or None"),
    ("seed-negative", lambda: seed_everything(-1), V,
     r"seed must be an int in \[0, 2\*\*32 - 1\], got -1"),
    ("seed-float", lambda: seed_everything(1.5), T, r"seed must be an int"),
    # models (chapters 1-4)
    ("models-MLP-in_features-zero", lambda: models.MLP(in_features=0), V,
     r"in_features must be an int >= 1, got 0"),
    ("models-MLP-hidden-width-zero", lambda: models.MLP(hidden=(300, 0)), V,
     r"hidden \(each entry\) must be an int >= 1, got 0"),
    ("models-MLP-hidden-not-sequence", lambda: models.MLP(hidden=5), T,
     r"hidden must be a sequence of ints, got int"),
    ("models-MLP-num_classes-float", lambda: models.MLP(num_classes=2.5), T,
     r"num_classes must be an int"),
    ("models-SmallCNN-image_size", lambda: models.SmallCNN(image_size=10), V,
     r"image_size must be a multiple of 4, got 10"),
    ("models-SmallCNN-one-channel-count", lambda: models.SmallCNN(channels=(16,)), V,
     r"channels must hold exactly 2 ints >= 1"),
    ("models-SmallCNN-negative-channels", lambda: models.SmallCNN(channels=(16, -1)), V,
     r"channels \(each entry\) must be an int >= 1, got -1"),
    ("models-SmallCNN-in_channels-zero", lambda: models.SmallCNN(in_channels=0), V,
     r"in_channels must be an int >= 1, got 0"),
    # augment (chapter 3.3)
    ("augment-integer-images", lambda: augment.rotate(_images(2, 1, 8, 8, dtype=torch.uint8), 10.0),
     T, r"images must be a floating-point tensor"),
    ("augment-images-2d", lambda: augment.hflip(_images(8, 8)), V,
     r"images must be a 3-D or 4-D tensor, got shape \(8, 8\)"),
    ("augment-images-list", lambda: augment.hflip([[0.0]]), T, r"images must be a torch.Tensor"),
    ("augment-images-empty", lambda: augment.random_affine(_images(0, 1, 8, 8)), V,
     r"images must hold at least one element"),
    ("augment-theta-scale-zero", lambda: augment.affine_theta(scale=0.0, height=8, width=8), V,
     r"scale must be a number > 0, got 0\.0"),
    ("augment-theta-height-zero", lambda: augment.affine_theta(height=0, width=8), V,
     r"height must be an int >= 1, got 0"),
    ("augment-theta-translate-single", lambda: augment.affine_theta(translate=(1.0,), height=8,
                                                                   width=8),
     V, r"translate must be a pair \(tx, ty\)"),
    ("augment-theta-angle-nan", lambda: augment.affine_theta(float("nan"), height=8, width=8), V,
     r"angle must be a finite number"),
    ("augment-resample-mode", lambda: augment.affine_resample(_images(1, 8, 8), torch.eye(2, 3),
                                                              mode="bicubic"),
     V, r"mode must be one of \['bilinear', 'nearest'\], got 'bicubic'"),
    ("augment-resample-theta-shape",
     lambda: augment.affine_resample(_images(2, 1, 8, 8), torch.eye(3)), V,
     r"theta must have shape \(2, 3\) or \(2, 2, 3\)"),
    ("augment-degrees-above-180", lambda: augment.random_affine(_images(1, 8, 8), degrees=200), V,
     r"degrees must be a number in \[0, 180\], got 200"),
    ("augment-translate-1", lambda: augment.random_affine(_images(1, 8, 8), translate=1.0), V,
     r"translate must be a number in \[0, 1\), got 1\.0"),
    ("augment-flip_p-above-1", lambda: augment.random_affine(_images(1, 8, 8), flip_p=1.5), V,
     r"flip_p must be a number in \[0, 1\], got 1\.5"),
    ("augment-scale-reversed", lambda: augment.random_affine(_images(1, 8, 8), scale=(1.2, 0.8)),
     V, r"scale must be a pair \(a, b\) with 1e-06 <= a <= b, got \(1\.2, 0\.8\)"),
    ("augment-pipeline-scale-above-1", lambda: augment.make_pipeline(scale=(0.5, 1.5)), V,
     r"scale must be a pair \(a, b\) with 1e-06 <= a <= b <= 1, got \(0\.5, 1\.5\)"),
    ("augment-pipeline-size-zero", lambda: augment.make_pipeline(size=0), V,
     r"size \(each entry\) must be an int >= 1, got 0"),
    ("augment-pipeline-flip-not-bool", lambda: augment.make_pipeline(flip="yes"), T,
     r"flip must be a bool"),
    ("augment-apply-not-callable", lambda: augment.apply_pipeline(3, _images(1, 8, 8)), T,
     r"pipeline must be callable"),
    ("augment-apply-negative-seed",
     lambda: augment.apply_pipeline(augment.make_pipeline(), _images(1, 8, 8), seed=-1), V,
     r"seed must be an int in \[0, 2\*\*32 - 1\] or None, got -1"),
    # compress (chapters 1 and 3.4)
    ("compress-quantize-integer-weight", lambda: compress.quantize_int8(torch.arange(4)), T,
     r"weight must be a floating-point tensor"),
    ("compress-quantize-weight-list", lambda: compress.quantize_int8([1.0, 2.0]), T,
     r"weight must be a torch.Tensor, got list"),
    ("compress-quantize-weight-0d", lambda: compress.quantize_int8(torch.tensor(1.0)), V,
     r"weight must have at least one dimension"),
    ("compress-quantize-weight-nan", lambda: compress.quantize_int8(torch.tensor([1.0, torch.nan])),
     V, r"weight must contain only finite values"),
    ("compress-quantize_dynamic-not-module", lambda: compress.quantize_dynamic_int8(torch.ones(3)),
     T, r"model must be a torch.nn.Module, got Tensor"),
    ("compress-quantize-empty-weight", lambda: compress.quantize_int8(torch.zeros(0, 3)), V,
     r"weight must hold at least one element"),
    ("compress-quantize-axis", lambda: compress.quantize_int8(torch.ones(2, 2), axis=2), V,
     r"axis must be an int in \[-2, 1\], got 2"),
    ("compress-latency-repeats", lambda: compress.measure_latency(_mlp(), torch.ones(1, 4),
                                                                  repeats=2),
     V, r"repeats must be an int >= 3, got 2"),
    ("compress-latency-warmup", lambda: compress.measure_latency(_mlp(), torch.ones(1, 4),
                                                                 warmup=-1),
     V, r"warmup must be an int >= 0, got -1"),
    ("compress-flops-input-list", lambda: compress.flops(_mlp(), [[1.0] * 4]), T,
     r"example_input must be a torch.Tensor"),
    ("compress-count-parameters-not-module", lambda: compress.count_parameters("model"), T,
     r"model must be a torch.nn.Module"),
    ("compress-trainable_only-not-bool", lambda: compress.count_parameters(_mlp(), "yes"), T,
     r"trainable_only must be a bool"),
    ("optim-optimize_2d-start-not-finite",
     lambda: optim.optimize_2d(lambda x, y: torch.log(x) + y, (-1.0, 0.0),
                               lambda p: optim.GD(p, lr=0.1)), V,
     r"start must be a point where f is finite, got \(-1\.0, 0\.0\)"),
    ("compress-dequantize-tensor", lambda: compress.dequantize(torch.ones(2)), T,
     r"quantized must be a QuantizedTensor"),
    ("compress-quantize_affine-bits-zero", lambda: compress.quantize_affine(torch.ones(3), 0), V,
     r"bits must be an int in \[1, 16\], got 0"),
    ("compress-quantize_affine-list", lambda: compress.quantize_affine([1.0]), T,
     r"tensor must be a torch.Tensor, got list"),
    ("compress-quantize_affine-axis", lambda: compress.quantize_affine(torch.ones(2, 2), axis=2),
     V, r"axis must be an int in \[-2, 1\], got 2"),
    ("compress-quantize_symmetric-bits-one",
     lambda: compress.quantize_symmetric(torch.ones(3), 1), V, r"bits must be an int in \[2, 16\]"),
    ("compress-fake_quantize-range", lambda: compress.fake_quantize(torch.ones(2), 0.1, 0, 5, 5),
     V, r"quant_min must be < quant_max, got 5 and 5"),
    ("compress-fake_quantize-scale", lambda: compress.fake_quantize(torch.ones(2), 0.0, 0, 0, 255),
     V, r"scale must be a number > 0, got 0.0"),
    ("compress-fake_quantize-zero_point",
     lambda: compress.fake_quantize(torch.ones(2), 0.1, 300, 0, 255), V,
     r"zero_point must be in \[quant_min, quant_max\] = \[0, 255\], got 300"),
    ("compress-kmeans-bits", lambda: compress.kmeans_quantize(torch.ones(4), 9), V,
     r"bits must be an int in \[1, 8\], got 9"),
    ("compress-low_rank_linear-rank",
     lambda: compress.low_rank_linear(nn.Linear(4, 3), 4), V,
     r"rank must be an int in \[1, 3\], got 4"),
    ("compress-low_rank-layer-name", lambda: compress.low_rank(_mlp(), 2, ["7"]), V,
     r"layers must name nn.Linear layers of model .*, got '7'"),
    ("compress-calibrate-method",
     lambda: compress.calibrate(nn.Sequential(nn.Linear(2, 2)), [torch.ones(1, 2)], "mean"), V,
     r"method must be one of"),
    ("compress-quantize_static-not-sequential",
     lambda: compress.quantize_static(nn.Linear(2, 2), [torch.ones(1, 2)]), T,
     r"model must be an nn.Sequential"),
    ("compress-quantize_static-layer", lambda: compress.quantize_static(
        nn.Sequential(nn.Linear(2, 2), nn.Tanh()), [torch.ones(1, 2)]), T,
     r"model must be an nn.Sequential of Conv2d, Linear, ReLU.*got a Tanh layer"),
    ("compress-quantize_dynamic-per_channel",
     lambda: compress.quantize_dynamic_int8(_mlp(), per_channel="yes"), T,
     r"per_channel must be a bool"),
    # environment (chapter 6)
    ("environment-compile_timeout-zero", lambda: environment.feature_checks(compile_timeout=0), V,
     r"compile_timeout must be a number > 0, got 0"),
    ("environment-packages-str", lambda: environment.versions("torch"), T,
     r"packages must be a tuple or list of distribution names"),
    # parallel (chapter 3.4)
    ("parallel-num_threads-zero", lambda: parallel.num_threads(0).__enter__(), V,
     r"n must be an int >= 1, got 0"),
    ("parallel-thread_scaling-empty", lambda: parallel.thread_scaling(_mlp(), torch.ones(1, 4), ()),
     V, r"threads must hold at least one int, got none"),
    ("parallel-thread_scaling-zero",
     lambda: parallel.thread_scaling(_mlp(), torch.ones(1, 4), (0,)), V,
     r"threads \(each entry\) must be an int >= 1, got 0"),
    ("parallel-torchrun-nproc-zero", lambda: parallel.torchrun_command("x.py", nproc=0), V,
     r"nproc must be an int >= 1, got 0"),
    ("parallel-run_torchrun-timeout", lambda: parallel.run_torchrun("x.py", timeout_s=0), V,
     r"timeout_s must be a number > 0, got 0"),
    ("parallel-init-timeout", lambda: parallel.init_distributed(timeout_s=-1.0), V,
     r"timeout_s must be a number > 0, got -1\.0"),
    ("parallel-ddp-rank-out-of-range", lambda: _ddp(rank=3), V,
     r"rank must be an int in \[0, 0\], got 3"),
    ("parallel-ddp-empty-dataset",
     lambda: _ddp(dataset=TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))), V,
     r"dataset must hold at least one sample"),
    ("parallel-ddp-lr-zero", lambda: _ddp(lr=0), V, r"lr must be a number > 0, got 0"),
    ("parallel-ddp-batch-not-divisible",
     lambda: _ddp(global_batch_size=3, world_size=2),
     V, r"global_batch_size must be divisible by world_size=2, got 3"),
    ("parallel-ddp-fewer-samples-than-processes",
     lambda: _ddp(dataset=TensorDataset(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long)),
                  global_batch_size=2, world_size=2), V,
     r"dataset must hold at least world_size=2 samples \(one per process\), got 1"),
    ("parallel-ddp-checkpoint-int", lambda: _ddp(checkpoint=3), T,
     r"checkpoint must be a str or os.PathLike or None, got int"),
    ("parallel-torchrun-max_restarts-negative",
     lambda: parallel.torchrun_command("x.py", max_restarts=-1), V,
     r"max_restarts must be an int >= 0, got -1"),
    ("parallel-peak_memory-fn", lambda: parallel.peak_memory_bytes(3), T,
     r"fn must be callable"),
    ("parallel-peak_memory-device", lambda: parallel.peak_memory_bytes(lambda: None, "meta"), V,
     r"device must be 'cpu' or a CUDA device, got meta"),
    ("parallel-saved_tensor_bytes-fn", lambda: parallel.saved_tensor_bytes(None), T,
     r"fn must be callable"),
    # train (chapter 1)
    ("train-epochs-zero", lambda: _fit(epochs=0), V, r"epochs must be an int >= 1, got 0"),
    ("train-optimizer-none", lambda: _fit(optimizer=None), T,
     r"optimizer must be a torch.optim.Optimizer"),
    ("train-amp_dtype-float64", lambda: _fit(amp_dtype=torch.float64), V,
     r"amp_dtype must be None, torch.bfloat16 or torch.float16"),
    ("train-loss_fn-not-callable", lambda: _fit(loss_fn="cross_entropy"), T,
     r"loss_fn must be callable"),
    ("train-loader-not-iterable", lambda: _fit(train_loader=3), T,
     r"train_loader must be an iterable of \(inputs, targets\) batches"),
    ("train-after_step-not-callable", lambda: _fit(after_step=1), T,
     r"after_step must be None or callable"),
    ("train-evaluate-empty-loader", lambda: train.evaluate(_mlp(), [], nn.functional.cross_entropy,
                                                           "cpu"),
     V, r"loader must yield at least one batch"),
    ("train-save_checkpoint-not-module", lambda: train.save_checkpoint("x.pt", {"w": 1}), T,
     r"model must be a torch.nn.Module"),
    ("train-load_checkpoint-bad-optimizer",
     lambda: train.load_checkpoint("x.pt", _mlp(), optimizer="adam"), T,
     r"optimizer must be a torch.optim.Optimizer or None"),
    # recipes (chapters 4, 5, 7)
    ("recipes-unknown-table", lambda: recipes.load_sklearn_table("iris"), V,
     r"name must be one of \['breast_cancer', 'diabetes', 'wine'\], got 'iris'"),
    ("recipes-time-shift-too-large", lambda: recipes.random_time_shift(torch.zeros(2, 8), 8), V,
     r"max_shift must be an int in \[0, 7\], got 8"),
    ("recipes-time-shift-1d", lambda: recipes.random_time_shift(torch.zeros(8), 1), V,
     r"signals must have shape \(N, L\) or \(N, C, L\)"),
    ("recipes-profile-threads-zero",
     lambda: recipes.profile_model(_mlp(), torch.ones(1, 4), threads=0), V,
     r"threads must be an int >= 1, got 0"),
    ("recipes-early-stopping-patience-zero",
     lambda: recipes.fit_early_stopping(_mlp(), _loader(), _loader(), _sgd(_mlp()),
                                        nn.functional.cross_entropy, 2, patience=0), V,
     r"patience must be an int >= 1 or None, got 0"),
    ("recipes-over_seeds-empty", lambda: recipes.over_seeds(lambda s: 1.0, []), V,
     r"seeds must hold at least one int"),
    ("recipes-augmented-loader-transform", lambda: recipes.AugmentedLoader(_loader(), 3), T,
     r"transform must be callable"),
    # Pareto front (chapters 3.4, 7) and timing (chapters 1, 3.3, 3.4)
    ("compress-pareto-lengths", lambda: compress.pareto_front([1, 2], [0.5]), V,
     r"costs and scores must have the same length, got 2 and 1"),
    ("timing-fns-empty", lambda: timing.interleaved({}), V,
     r"fns must hold at least one callable \(name -> fn\), got none"),
    ("timing-fns-list", lambda: timing.interleaved([print]), T,
     r"fns must be a mapping name -> callable, got list"),
    ("timing-fn-not-callable", lambda: timing.interleaved({"a": 3}), T,
     r"fns\['a'\] must be callable"),
    ("timing-rounds-zero", lambda: timing.interleaved({"a": print}, rounds=0), V,
     r"rounds must be an int >= 1, got 0"),
    ("timing-number-zero", lambda: timing.measure(print, number=0), V,
     r"number must be an int >= 1, got 0"),
    ("timing-warmup-negative", lambda: timing.measure(print, warmup=-1), V,
     r"warmup must be an int >= 0, got -1"),
    ("timing-repeats-zero", lambda: timing.measure(print, repeats=0), V,
     r"repeats must be an int >= 1, got 0"),
    ("timing-num_threads-zero", lambda: timing.measure(print, num_threads=0), V,
     r"num_threads must be an int >= 1 or None, got 0"),
    ("timing-num_threads-missing-arm", lambda: timing.interleaved({"a": print}, num_threads={}), T,
     r"num_threads\['a'\] must be an int >= 1, got NoneType"),
    ("timing-ratio-unknown-arm", lambda: timing.Comparison({"a": [1.0]}).ratio("a", "b"), V,
     r"denominator must be one of \['a'\], got 'b'"),
    ("timing-inference-not-module", lambda: timing.inference("model").__enter__(), T,
     r"model must be a torch.nn.Module"),
    # source (every chapter)
    ("source-no-source", lambda: source.source_markdown(42), T,
     r"obj must be a function, class or method with source"),
]


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_refused_with_a_message_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
