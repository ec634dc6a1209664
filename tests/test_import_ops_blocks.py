"""Edge-vision blocks exported by torch (``dynamo=False``): MobileNetV3 inverted residual with
squeeze-excite and HardSigmoid/HardSwish, ShuffleNet unit (chunk + 5-D channel shuffle), SqueezeNet
fire module (ceil-mode pooling, channel Concat), RegNet/ResNeXt grouped convolution, U-Net head
(ConvTranspose, bilinear/nearest Resize, InstanceNorm) and an SSD head with two outputs.
BatchNorm statistics come from a few training-mode passes over random data."""

from __future__ import annotations

import pytest
from test_import_ops_common import check_onnx

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


class SE(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.a = nn.Conv2d(c, c // 4, 1)
        s.b = nn.Conv2d(c // 4, c, 1)

    def forward(s, x):
        return x * F.hardsigmoid(s.b(F.relu(s.a(F.adaptive_avg_pool2d(x, 1)))))


class MBV3(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish())
        s.exp = nn.Sequential(nn.Conv2d(16, 48, 1), nn.BatchNorm2d(48), nn.Hardswish())
        s.dw = nn.Sequential(nn.Conv2d(48, 48, 5, 2, 2, groups=48), nn.BatchNorm2d(48), nn.Hardswish())
        s.se = SE(48)
        s.proj = nn.Sequential(nn.Conv2d(48, 24, 1), nn.BatchNorm2d(24))
        s.res = nn.Sequential(
            nn.Conv2d(24, 72, 1), nn.ReLU6(), nn.Conv2d(72, 72, 3, 1, 1, groups=72), nn.ReLU6(), nn.Conv2d(72, 24, 1)
        )
        s.head = nn.Linear(24, 10)

    def forward(s, x):
        x = s.proj(s.se(s.dw(s.exp(s.stem(x)))))
        x = x + s.res(x)
        return s.head(x.mean((2, 3)))


class Shuffle(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(3, 16, 3, 2, 1)
        s.pool = nn.MaxPool2d(3, 2, 1)
        s.b1 = nn.Sequential(
            nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.Conv2d(8, 8, 1), nn.ReLU()
        )
        s.fc = nn.Linear(16, 5)

    def forward(s, x):
        x = s.pool(F.relu(s.c1(x)))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, s.b1(b)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return s.fc(x.mean([2, 3]))


class Fire(nn.Module):
    def __init__(s):
        super().__init__()
        s.c = nn.Conv2d(3, 16, 3, 2)
        s.p = nn.MaxPool2d(3, 2, ceil_mode=True)
        s.sq = nn.Conv2d(16, 8, 1)
        s.e1 = nn.Conv2d(8, 16, 1)
        s.e3 = nn.Conv2d(8, 16, 3, padding=1)
        s.cls = nn.Conv2d(32, 6, 1)

    def forward(s, x):
        x = s.p(F.relu(s.c(x)))
        x = F.relu(s.sq(x))
        x = torch.cat([F.relu(s.e1(x)), F.relu(s.e3(x))], 1)
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(s.cls(x)), 1), 1)


class RegNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Conv2d(3, 32, 3, 2, 1)
        s.bn = nn.BatchNorm2d(32)
        s.g = nn.Conv2d(32, 32, 3, 2, 1, groups=4)
        s.bn2 = nn.BatchNorm2d(32)
        s.sc = nn.Conv2d(32, 32, 1, 2)
        s.fc = nn.Linear(32, 7)

    def forward(s, x):
        x = F.relu(s.bn(s.stem(x)))
        y = F.relu(s.bn2(s.g(x))) + s.sc(x)
        return s.fc(F.avg_pool2d(y, 2, ceil_mode=True).flatten(1).reshape(1, 32, -1).mean(-1))


class UNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.d1 = nn.Conv2d(3, 8, 3, 1, 1)
        s.d2 = nn.Conv2d(8, 16, 3, 2, 1)
        s.up = nn.ConvTranspose2d(16, 8, 2, 2)
        s.u2 = nn.Conv2d(16, 8, 3, 1, 1)
        s.out = nn.Conv2d(8, 3, 1)
        s.inorm = nn.InstanceNorm2d(8, affine=True)

    def forward(s, x):
        a = F.relu(s.d1(x))
        b = F.relu(s.d2(a))
        u = s.up(b)
        u2 = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)[:, :8]
        y = F.relu(s.inorm(s.u2(torch.cat([a, u + u2], 1))))
        return s.out(F.interpolate(y, scale_factor=0.5, mode="nearest"))


class SSD(nn.Module):
    def __init__(s):
        super().__init__()
        s.f1 = nn.Conv2d(3, 16, 3, 2, 1)
        s.f2 = nn.Conv2d(16, 16, 3, 2, 1)
        s.box1 = nn.Conv2d(16, 4 * 3, 3, 1, 1)
        s.cls1 = nn.Conv2d(16, 5 * 3, 3, 1, 1)
        s.box2 = nn.Conv2d(16, 4 * 3, 3, 1, 1)
        s.cls2 = nn.Conv2d(16, 5 * 3, 3, 1, 1)

    def forward(s, x):
        a = F.relu(s.f1(x))
        b = F.relu(s.f2(a))
        boxes = torch.cat(
            [s.box1(a).permute(0, 2, 3, 1).reshape(1, -1, 4), s.box2(b).permute(0, 2, 3, 1).reshape(1, -1, 4)], 1
        )
        cls = torch.cat(
            [s.cls1(a).permute(0, 2, 3, 1).reshape(1, -1, 5), s.cls2(b).permute(0, 2, 3, 1).reshape(1, -1, 5)], 1
        )
        return boxes, torch.softmax(cls, -1)


MODELS = {"mbv3": MBV3, "shuffle": Shuffle, "fire": Fire, "regnet": RegNet, "unet": UNet, "ssd": SSD}
#: one opset per block keeps the run short; the ops differ between opsets mostly below 13
OPSETS = {"mbv3": 11, "shuffle": 13, "fire": 17, "regnet": 11, "unet": 13, "ssd": 17}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_edge_vision_block(name, tmp_path):
    import onnx

    torch.manual_seed(0)
    m = MODELS[name]()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(4, 3, 32, 32))
    m.eval()
    p = tmp_path / "m.onnx"
    torch.onnx.export(
        m,
        torch.randn(1, 3, 32, 32),
        str(p),
        opset_version=OPSETS[name],
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
    )
    res = check_onnx(onnx.load(str(p)), tmp_path, (1, 3, 32, 32), atol=5e-4, min_sqnr=25)
    assert res.tflm_ran
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"
