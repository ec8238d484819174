"""The command-line codec end to end: train, compress, decompress, info, and exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skdae._persist import load, save
from skdae.cli import main
from skdae.codec import archive_info

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

N_TRAIN = 300
TINY_AE = ["--hidden-layer-sizes", "32,8", "--pretrain-epochs", "2", "--epochs", "3"]


@pytest.fixture(scope="module")
def mnist(mnist_home):
    from skdae.datasets import load_idx

    return {
        "train": mnist_home / "train-images-idx3-ubyte.gz",
        "test": mnist_home / "t10k-images-idx3-ubyte.gz",
        "test_images": load_idx(mnist_home / "t10k-images-idx3-ubyte.gz")[:40],
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory, mnist):
    """A folder with 40 PNG digits, a PCA model and a tiny autoencoder model."""
    root = tmp_path_factory.mktemp("cli")
    pngs = root / "pngs"
    pngs.mkdir()
    for i, image in enumerate(mnist["test_images"]):
        Image.fromarray(image).save(pngs / f"digit{i:03d}.png")
    pca = root / "pca.skdae"
    args = ["train", str(mnist["train"]), "--limit", str(N_TRAIN), "-o", str(pca), "-q"]
    assert main(args + ["--model", "pca", "--n-components", "12", "--n-bits", "5"]) == 0
    ae = root / "ae.skdae"
    assert main(["train", str(mnist["train"]), "--limit", str(N_TRAIN), "-o", str(ae), "-q",
                 *TINY_AE, "--n-bits", "6"]) == 0
    return root


def _codec(path):
    return load(path)


@pytest.mark.parametrize("model", ["pca", "ae"])
def test_end_to_end_on_png_folder(work, mnist, model, tmp_path, capsys):
    model_path = work / f"{model}.skdae"
    archive = tmp_path / "digits.skc"
    assert main(["compress", str(model_path), str(work / "pngs"), "-o", str(archive)]) == 0
    assert "bits/pixel" in capsys.readouterr().out
    info = archive_info(archive.read_bytes())
    assert (info.count, info.shape) == (40, (28, 28))

    codec = _codec(model_path)
    X = mnist["test_images"].astype(np.float32) / np.float32(255)
    expected = codec.decompress(codec.compress(X))
    assert archive.read_bytes() == codec.compress(X)

    out = tmp_path / "decoded"
    assert main(["decompress", str(model_path), str(archive), "-o", str(out), "-q"]) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"] and len(files) == 40
    decoded = np.stack([np.asarray(Image.open(f)) for f in files])
    np.testing.assert_array_equal(decoded, np.rint(np.clip(expected, 0, 1) * 255))

    npy = tmp_path / "decoded.npy"
    assert main(["decompress", str(model_path), str(archive), "-o", str(npy),
                 "--format", "npy", "-q"]) == 0
    np.testing.assert_array_equal(np.load(npy), expected)


def test_info(work, tmp_path, capsys):
    archive = tmp_path / "a.skc"
    assert main(["compress", str(work / "pca.skdae"), str(work / "pngs"), "-o", str(archive),
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(archive)]) == 0
    text = capsys.readouterr().out
    assert "bits per pixel" in text and "28x28" in text
    assert main(["info", str(archive), "--json", "--model", str(work / "pca.skdae")]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["count"] == 40 and fields["n_bits"] == 5 and fields["model_matches"]
    assert fields["bits_per_pixel"] == pytest.approx(8 * archive.stat().st_size / (40 * 784))
    # another model: reported, and exit code 1 for scripts
    assert main(["info", str(archive), "--json", "--model", str(work / "ae.skdae")]) == 1
    assert json.loads(capsys.readouterr().out)["model_matches"] is False


def test_npy_and_idx_inputs(work, mnist, tmp_path):
    images = mnist["test_images"]
    np.save(tmp_path / "u8.npy", images[:10])
    np.save(tmp_path / "f32.npy", images[10:20].astype(np.float32) / 255)
    archive = tmp_path / "mixed.skc"
    assert main(["compress", str(work / "pca.skdae"), str(tmp_path / "u8.npy"),
                 str(tmp_path / "f32.npy"), str(mnist["test"]), "--limit", "25",
                 "-o", str(archive), "-q"]) == 0
    assert archive_info(archive.read_bytes()).count == 25
    # a model trained from a .npy of flat samples decodes to .npy only
    flat = tmp_path / "flat.npy"
    np.save(flat, images.reshape(len(images), -1))
    model = tmp_path / "flat.skdae"
    assert main(["train", str(flat), "--model", "pca", "--n-components", "5", "-o",
                 str(model), "-q"]) == 0
    assert main(["compress", str(model), str(flat), "-o", str(archive), "-q"]) == 0
    assert main(["decompress", str(model), str(archive), "-o", str(tmp_path / "d"), "-q"]) == 1
    assert main(["decompress", str(model), str(archive), "-o", str(tmp_path / "d.npy"),
                 "--format", "npy", "-q"]) == 0
    assert np.load(tmp_path / "d.npy").shape == (40, 784)


def test_runtime_errors_exit_1(work, mnist, tmp_path, capsys):
    pca = str(work / "pca.skdae")
    good = tmp_path / "good.skc"
    assert main(["compress", pca, str(work / "pngs"), "-o", str(good), "-q"]) == 0

    corrupt = tmp_path / "corrupt.skc"
    corrupt.write_bytes(good.read_bytes()[:-10])
    Image.new("L", (32, 32)).save(tmp_path / "big.png")
    Image.new("RGB", (28, 28)).save(tmp_path / "rgb.png")
    Image.new("I;16", (28, 28)).save(tmp_path / "deep.png")
    (tmp_path / "not-a-model").write_bytes(b"PK\x03\x04 nothing")
    (tmp_path / "empty").mkdir()
    save(load(pca).model, tmp_path / "bare.skdae")  # a model without a codec

    cases = [
        ["compress", pca, str(tmp_path / "missing.png"), "-o", str(tmp_path / "x")],
        ["compress", pca, str(tmp_path / "big.png"), "-o", str(tmp_path / "x")],
        ["compress", pca, str(tmp_path / "rgb.png"), "-o", str(tmp_path / "x")],
        ["compress", pca, str(tmp_path / "deep.png"), "-o", str(tmp_path / "x")],
        ["compress", pca, str(tmp_path / "empty"), "-o", str(tmp_path / "x")],
        ["compress", str(tmp_path / "not-a-model"), str(work / "pngs"), "-o", str(tmp_path / "x")],
        ["compress", str(tmp_path / "bare.skdae"), str(work / "pngs"), "-o", str(tmp_path / "x")],
        ["decompress", pca, str(corrupt), "-o", str(tmp_path / "out")],
        ["decompress", str(work / "ae.skdae"), str(good), "-o", str(tmp_path / "out")],
        ["decompress", pca, str(tmp_path / "missing.skc"), "-o", str(tmp_path / "out")],
        ["info", str(corrupt)],
        ["info", pca],
        ["train", str(tmp_path / "big.png"), str(work / "pngs"), "-o", str(tmp_path / "m")],
        ["train", str(work / "pngs"), "--model", "pca", "--n-components", "200", "-o",
         str(tmp_path / "m")],
    ]
    for args in cases:
        assert main(args + ["-q"] if args[0] != "info" else args) == 1, args
        err = capsys.readouterr().err
        assert f"skdae {args[0]}: error:" in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["train"],
        ["train", "x", "-o", "y", "--n-bits", "0"],
        ["train", "x", "-o", "y", "--n-bits", "17"],
        ["train", "x", "-o", "y", "--hidden-layer-sizes", "10,a"],
        ["train", "x", "-o", "y", "--model", "svd"],
        ["compress", "model"],
        ["decompress", "model", "archive"],
        ["decompress", "m", "a", "-o", "d", "--format", "gif"],
        ["info"],
    ],
)
def test_usage_errors_exit_2(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_missing_pillow_is_explained(work, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert main(["compress", str(work / "pca.skdae"), str(work / "pngs"), "-o",
                 str(tmp_path / "x"), "-q"]) == 1
    assert "pip install skdae[images]" in capsys.readouterr().err


def test_python_m_skdae_help():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "skdae", "--help"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "compress", "decompress", "info"):
        assert command in result.stdout
