"""Edge-vision blocks exported by torch (``dynamo=False``): MobileNetV3 inverted residual with
squeeze-excite and HardSigmoid/HardSwish, ShuffleNet unit (chunk + 5-D channel shuffle), SqueezeNet
fire module (ceil-mode pooling, channel Concat), RegNet/ResNeXt grouped convolution, U-Net head
(ConvTranspose, bilinear/nearest Resize, InstanceNorm) and an SSD head with two outputs.
Also: a ResNet stem (padded MaxPool), DeepLab ASPP (dilation, 1x1 -> HxW bilinear), a ViT (patch
conv, class-token Concat, position Add, nn.TransformerEncoderLayer), a YOLO-style head (SiLU,
nearest upsample, 5-D permute output), a DS-CNN keyword spotter, a dilated 1-D TCN and a CRNN
(conv -> GRU). BatchNorm statistics come from a few training-mode passes over random data."""

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


class ResNetStem(nn.Module):
    def __init__(s):
        super().__init__()
        s.c = nn.Conv2d(3, 16, 7, 2, 3)
        s.bn = nn.BatchNorm2d(16)
        s.p = nn.MaxPool2d(3, 2, 1)
        s.b1 = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.BatchNorm2d(16)
        )
        s.fc = nn.Linear(16, 10)

    def forward(s, x):
        x = s.p(F.relu(s.bn(s.c(x))))
        x = F.relu(x + s.b1(x))
        return s.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ASPP(nn.Module):
    def __init__(s):
        super().__init__()
        s.c = nn.Conv2d(3, 16, 3, 2, 1)
        s.a1 = nn.Conv2d(16, 8, 1)
        s.a2 = nn.Conv2d(16, 8, 3, padding=2, dilation=2)
        s.gp = nn.Conv2d(16, 8, 1)
        s.out = nn.Conv2d(24, 4, 1)

    def forward(s, x):
        f = F.relu(s.c(x))
        h, w = f.shape[2:]
        g = F.interpolate(F.relu(s.gp(F.adaptive_avg_pool2d(f, 1))), size=(h, w), mode="bilinear", align_corners=False)
        y = s.out(torch.cat([F.relu(s.a1(f)), F.relu(s.a2(f)), g], 1))
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)


class ViT(nn.Module):
    def __init__(s, d=32):
        super().__init__()
        s.patch = nn.Conv2d(3, d, 8, 8)
        s.cls = nn.Parameter(torch.randn(1, 1, d))
        s.pos = nn.Parameter(torch.randn(1, 17, d) * 0.1)
        s.enc = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True, activation="gelu", norm_first=True)
        s.norm = nn.LayerNorm(d)
        s.head = nn.Linear(d, 10)

    def forward(s, x):
        t = s.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([s.cls.expand(t.shape[0], -1, -1), t], 1) + s.pos
        t = s.enc(t)
        return s.head(s.norm(t)[:, 0])


class YoloHead(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(3, 16, 3, 2, 1)
        s.c2 = nn.Conv2d(16, 32, 3, 2, 1)
        s.lat = nn.Conv2d(32, 16, 1)
        s.det = nn.Conv2d(32, 3 * 7, 1)

    def forward(s, x):
        a = F.silu(s.c1(x))
        b = F.silu(s.c2(a))
        u = F.interpolate(F.silu(s.lat(b)), scale_factor=2, mode="nearest")
        p = s.det(torch.cat([a, u], 1))
        n, _, h, w = p.shape
        return torch.sigmoid(p.view(n, 3, 7, h, w).permute(0, 1, 3, 4, 2).contiguous())


class DSCNN(nn.Module):
    def __init__(s):
        super().__init__()
        s.c = nn.Conv2d(1, 16, (10, 4), (2, 2), (5, 1))
        s.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        s.pw = nn.Conv2d(16, 16, 1)
        s.fc = nn.Linear(16, 12)

    def forward(s, x):
        x = F.relu(s.c(x))
        x = F.relu(s.pw(F.relu(s.dw(x))))
        return F.softmax(s.fc(F.avg_pool2d(x, x.shape[2:]).flatten(1)), -1)


class TCN(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv1d(1, 8, 5, padding=4, dilation=2)
        s.c2 = nn.Conv1d(8, 8, 3, padding=2, dilation=2)
        s.fc = nn.Linear(8, 3)

    def forward(s, x):
        x = x.reshape(1, 1, -1)
        y = F.relu(s.c2(F.relu(s.c1(x))))[..., : x.shape[-1]]
        return s.fc(y.max(-1)[0])


class CRNN(nn.Module):
    def __init__(s):
        super().__init__()
        s.c = nn.Conv2d(1, 8, 3, (2, 1), 1)
        s.gru = nn.GRU(8 * 8, 16, batch_first=True)
        s.fc = nn.Linear(16, 5)

    def forward(s, x):
        f = F.relu(s.c(x))  # [1, 8, 8, T]
        n, c, h, t = f.shape
        seq = f.permute(0, 3, 1, 2).reshape(n, t, c * h)
        y, _ = s.gru(seq)
        return s.fc(y.mean(1))


MODELS = {
    "mbv3": MBV3,
    "shuffle": Shuffle,
    "fire": Fire,
    "regnet": RegNet,
    "unet": UNet,
    "ssd": SSD,
    "resnet_stem": ResNetStem,
    "aspp": ASPP,
    "vit": ViT,
    "yolo": YoloHead,
    "dscnn": DSCNN,
    "tcn": TCN,
    "crnn": CRNN,
}
#: one opset per block keeps the run short; the ops differ between opsets mostly below 13
OPSETS = {
    "mbv3": 11,
    "shuffle": 13,
    "fire": 17,
    "regnet": 11,
    "unet": 13,
    "ssd": 17,
    "resnet_stem": 13,
    "aspp": 11,
    "vit": 17,
    "yolo": 13,
    "dscnn": 17,
    "tcn": 17,
    "crnn": 11,
}
SHAPES = {"dscnn": (1, 1, 49, 10), "tcn": (1, 64), "crnn": (1, 1, 16, 12)}
#: float-IR tolerance: GELU becomes its tanh form (within 3e-4 of the exact one) so every runtime has it
ATOL = {"vit": 2e-3}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_edge_vision_block(name, tmp_path):
    import onnx

    torch.manual_seed(0)
    shape = SHAPES.get(name, (1, 3, 32, 32))
    m = MODELS[name]()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(*shape))
    m.eval()
    p = tmp_path / "m.onnx"
    dynamic = {"dynamic_axes": {"x": {0: "batch"}}} if name in ("mbv3", "shuffle", "fire", "regnet", "unet") else {}
    torch.onnx.export(
        m, torch.randn(*shape), str(p), opset_version=OPSETS[name], dynamo=False, input_names=["x"], **dynamic
    )
    res = check_onnx(onnx.load(str(p)), tmp_path, shape, atol=ATOL.get(name, 5e-4), min_sqnr=25)
    assert res.tflm_ran
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"
