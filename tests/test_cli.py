"""The command-line codec end to end: train, compress, decompress, info, and exit codes.

Commands run in-process through :func:`skdae.cli.main`; tests that read or write image
files need Pillow (the ``pil_image`` fixture) and are skipped without it, the rest use IDX
and ``.npy`` inputs.
"""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skdae._persist import load, save
from skdae.cli import main
from skdae.codec import archive_info

N_TRAIN = 300
N_IMAGES = 40
TINY_AE = ["--hidden-layer-sizes", "32,8", "--pretrain-epochs", "2", "--epochs", "3"]


def run(*args):
    """Run ``skdae ARGS...`` in-process; return the exit code."""
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def mnist(mnist_home):
    from skdae.datasets import load_idx

    test = mnist_home / "t10k-images-idx3-ubyte.gz"
    return {
        "train": mnist_home / "train-images-idx3-ubyte.gz",
        "test": test,
        "images": load_idx(test)[:N_IMAGES],
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory, mnist):
    """A PCA model file and a tiny autoencoder model file, trained on MNIST IDX input."""
    root = tmp_path_factory.mktemp("models")
    train = ["train", mnist["train"], "--limit", N_TRAIN, "-q"]
    pca, ae = root / "pca.skdae", root / "ae.skdae"
    assert run(*train, "-o", pca, "--model", "pca", "--n-components", 12, "--n-bits", 5,
               "--allocation", "uniform") == 0
    assert run(*train, "-o", ae, *TINY_AE, "--n-bits", 6) == 0
    return {"pca": pca, "ae": ae}


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, mnist, pil_image):
    """A folder of PNG digits (the first test images)."""
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(mnist["images"]):
        pil_image.fromarray(image).save(folder / f"digit{i:03d}.png")
    return folder


def _expected(model_path, images):
    codec = load(model_path)
    X = images.astype(np.float32) / np.float32(255)
    return codec, codec.decompress(codec.compress(X))


@pytest.mark.parametrize("model", ["pca", "ae"])
def test_end_to_end_idx_to_npy(models, mnist, model, tmp_path, capsys):
    archive = tmp_path / "digits.skc"
    assert run("compress", models[model], mnist["test"], "--limit", N_IMAGES, "-o", archive) == 0
    assert "bits/pixel" in capsys.readouterr().out
    info = archive_info(archive.read_bytes())
    assert (info.count, info.shape) == (N_IMAGES, (28, 28))

    codec, expected = _expected(models[model], mnist["images"])
    assert archive.read_bytes() == codec.compress(mnist["images"] / np.float32(255))
    out = tmp_path / "decoded.npy"
    assert run("decompress", models[model], archive, "-o", out, "--format", "npy", "-q") == 0
    np.testing.assert_array_equal(np.load(out), expected)


@pytest.mark.parametrize("model", ["pca", "ae"])
def test_end_to_end_png_folder(models, mnist, pngs, model, tmp_path, pil_image):
    archive = tmp_path / "digits.skc"
    assert run("compress", models[model], pngs, "-o", archive, "-q") == 0
    _, expected = _expected(models[model], mnist["images"])
    out = tmp_path / "decoded"
    assert run("decompress", models[model], archive, "-o", out, "-q") == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"]
    assert len(files) == N_IMAGES
    decoded = np.stack([np.asarray(pil_image.open(f)) for f in files])
    np.testing.assert_array_equal(decoded, np.rint(np.clip(expected, 0, 1) * 255))


def test_train_on_png_folder(pngs, tmp_path):
    model = tmp_path / "m.skdae"
    assert run("train", pngs, "--model", "pca", "--n-components", 5, "-o", model, "-q") == 0
    header = load(model, return_metadata=True)[1]["skdae_cli"]
    assert header["sample_shape"] == [28, 28] and header["image_mode"] == "L"


def test_train_with_quantization_aware_fine_tuning_and_rate_term(mnist, tmp_path):
    model = tmp_path / "qat.skdae"
    assert run("train", mnist["train"], "--limit", N_TRAIN, "-q", "-o", model, *TINY_AE,
               "--n-bits", 2, "--fine-tune-epochs", 1, "--rate-weight", 0.05,
               "--fine-tune-learning-rate", 2e-4, "--fine-tune-loss", "squared_error",
               "--decorrelate") == 0
    codec = load(model)
    assert codec.fine_tune_epochs == 1 and codec.rate_weight == 0.05
    assert codec.fine_tune_learning_rate == 2e-4 and codec.model_.learning_rate == 2e-4
    assert codec.fine_tune_loss == "squared_error" and codec.model_.loss_ == "squared_error"
    assert codec.model.loss_ == "cross_entropy" and codec.decorrelate


def test_info(models, mnist, tmp_path, capsys):
    archive = tmp_path / "a.skc"
    assert run("compress", models["pca"], mnist["test"], "--limit", N_IMAGES, "-o", archive) == 0
    capsys.readouterr()
    assert run("info", archive) == 0
    text = capsys.readouterr().out
    assert "bits per pixel" in text and "28x28" in text
    assert run("info", archive, "--json", "--model", models["pca"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["count"] == N_IMAGES and fields["n_bits"] == 5 and fields["model_matches"]
    assert fields["sample_bits"] == 12 * 5 and fields["format_version"] == 2
    assert fields["bits_per_pixel"] == pytest.approx(8 * archive.stat().st_size / (40 * 784))
    # another model: reported, with exit code 1 for scripts
    assert run("info", archive, "--json", "--model", models["ae"]) == 1
    assert json.loads(capsys.readouterr().out)["model_matches"] is False


def test_npy_inputs_and_flat_samples(models, mnist, tmp_path):
    images = mnist["images"]
    np.save(tmp_path / "u8.npy", images[:10])
    np.save(tmp_path / "f32.npy", images[10:20].astype(np.float32) / 255)
    archive = tmp_path / "mixed.skc"
    inputs = [tmp_path / "u8.npy", tmp_path / "f32.npy", mnist["test"]]
    assert run("compress", models["pca"], *inputs, "--limit", 25, "-o", archive, "-q") == 0
    assert archive_info(archive.read_bytes()).count == 25
    # A model trained on flat samples decodes to .npy only.
    flat, model = tmp_path / "flat.npy", tmp_path / "flat.skdae"
    np.save(flat, images.reshape(len(images), -1))
    assert run("train", flat, "--model", "pca", "--n-components", 5, "-o", model, "-q") == 0
    assert run("compress", model, flat, "-o", archive, "-q") == 0
    assert run("decompress", model, archive, "-o", tmp_path / "d", "-q") == 1
    assert run("decompress", model, archive, "-o", tmp_path / "d.npy", "--format", "npy") == 0
    assert np.load(tmp_path / "d.npy").shape == (N_IMAGES, 784)


def _assert_fails_cleanly(capsys, *args):
    assert run(*args) == 1, args
    err = capsys.readouterr().err
    assert f"skdae {args[0]}: error:" in err and "Traceback" not in err, (args, err)
    return err


def test_runtime_errors_exit_1(models, mnist, tmp_path, capsys):
    pca, out = models["pca"], tmp_path / "out"
    good = tmp_path / "good.skc"
    assert run("compress", pca, mnist["test"], "--limit", 5, "-o", good, "-q") == 0
    corrupt = tmp_path / "corrupt.skc"
    corrupt.write_bytes(good.read_bytes()[:-10])
    (tmp_path / "not-a-model").write_bytes(b"PK\x03\x04 nothing")
    (tmp_path / "empty").mkdir()
    save(load(pca).model, tmp_path / "bare.skdae")  # a model without a codec
    np.save(tmp_path / "small.npy", np.zeros((3, 20, 20), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(3, np.uint8))
    np.save(tmp_path / "int64.npy", np.zeros((3, 28, 28), np.int64))
    np.save(tmp_path / "nan.npy", np.full((3, 28, 28), np.nan, np.float32))
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b not really gzip")

    for source in ("missing.png", "empty", "small.npy", "labels.npy", "int64.npy", "nan.npy",
                   "bad.gz"):  # fmt: skip
        _assert_fails_cleanly(capsys, "compress", pca, tmp_path / source, "-o", out, "-q")
    for model in ("not-a-model", "bare.skdae", "missing.skdae"):
        _assert_fails_cleanly(capsys, "compress", tmp_path / model, mnist["test"], "-o", out)
    _assert_fails_cleanly(capsys, "decompress", pca, corrupt, "-o", out)
    _assert_fails_cleanly(capsys, "decompress", models["ae"], good, "-o", out)
    _assert_fails_cleanly(capsys, "decompress", pca, tmp_path / "missing.skc", "-o", out)
    _assert_fails_cleanly(capsys, "info", corrupt)
    _assert_fails_cleanly(capsys, "info", pca)
    _assert_fails_cleanly(capsys, "train", tmp_path / "small.npy", mnist["test"], "-o", out)
    _assert_fails_cleanly(capsys, "train", mnist["test"], "--rate-weight", 0.1, "-o", out)
    _assert_fails_cleanly(capsys, "train", mnist["test"], "--fine-tune-learning-rate", 1e-4,
                          "-o", out)
    _assert_fails_cleanly(capsys, "train", mnist["test"], "--fine-tune-loss", "squared_error",
                          "-o", out)
    _assert_fails_cleanly(capsys, "train", mnist["test"], "--model", "pca", "--n-components",
                          5, "--decorrelate", "-o", out)
    _assert_fails_cleanly(
        capsys, "train", tmp_path / "small.npy", "--model", "pca", "--n-components", 50,
        "-o", out,
    )  # fmt: skip
    assert not out.exists()


def test_wrong_images_exit_1(models, tmp_path, capsys, pil_image):
    pil_image.new("L", (32, 32)).save(tmp_path / "big.png")
    pil_image.new("RGB", (28, 28)).save(tmp_path / "rgb.png")
    pil_image.new("I;16", (28, 28)).save(tmp_path / "deep.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for name in ("big.png", "rgb.png", "deep.png", "broken.png"):
        _assert_fails_cleanly(capsys, "compress", models["pca"], tmp_path / name, "-o",
                              tmp_path / "x", "-q")  # fmt: skip
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["train"],
        ["train", "x", "-o", "y", "--n-bits", "0"],
        ["train", "x", "-o", "y", "--n-bits", "17"],
        ["train", "x", "-o", "y", "--hidden-layer-sizes", "10,a"],
        ["train", "x", "-o", "y", "--model", "svd"],
        ["train", "x", "-o", "y", "--rate-weight", "-0.1"],
        ["train", "x", "-o", "y", "--rate-weight", "nan"],
        ["train", "x", "-o", "y", "--fine-tune-learning-rate", "0"],
        ["train", "x", "-o", "y", "--fine-tune-learning-rate", "inf"],
        ["train", "x", "-o", "y", "--fine-tune-loss", "l1"],
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


def test_missing_pillow_is_explained(models, tmp_path, monkeypatch, capsys):
    (tmp_path / "digit.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` fail
    assert run("compress", models["pca"], tmp_path, "-o", tmp_path / "x") == 1
    assert "pip install skdae[images]" in capsys.readouterr().err


def test_python_m_skdae_help():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "skdae", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "compress", "decompress", "info"):
        assert command in result.stdout


# --------------------------------------------------------------------------------------
# Progress lines
# --------------------------------------------------------------------------------------


def _progress_lines(err, label):
    return [line for line in err.splitlines() if line.startswith(f"{label}: ")]


@pytest.mark.parametrize(
    "total, updates, expected",
    [
        (40, [1] * 40, []),  # short job: the closing line only
        (2500, [1] * 2500, ["1000/2500", "2000/2500"]),  # at least 1,000 items apart
        (20_000, [1] * 20_000, [f"{k}/20000" for k in range(2000, 20_000, 2000)]),  # ~10
        (2500, [999, 2, 1498, 1], ["1001/2500", "2499/2500"]),  # batches crossing a step
    ],
)
def test_progress_lines(capsys, total, updates, expected):
    from skdae._cli_io import _ProgressLines

    progress_lines = _ProgressLines("counting", total)
    for n in updates:
        progress_lines.update(n)
    progress_lines.close()
    out, err = capsys.readouterr()
    assert out == "" and "\r" not in err
    lines = _progress_lines(err, "counting")
    assert [line.removeprefix("counting: ") for line in lines[:-1]] == expected
    assert lines[-1].startswith(f"counting: {total}/{total} done in ") and lines[-1].endswith(" s")
    assert len(lines) == len(err.splitlines())


@pytest.mark.parametrize("enabled, total", [(False, 5000), (True, 0)])
def test_progress_lines_silent(capsys, enabled, total):
    from skdae._cli_io import _ProgressLines

    progress_lines = _ProgressLines("counting", total, enabled=enabled)
    for _ in range(total):
        progress_lines.update()
    progress_lines.close()
    assert capsys.readouterr() == ("", "")


def test_cli_progress_on_stderr_and_quiet(models, pngs, tmp_path, capsys, monkeypatch):
    from skdae import _cli_io

    # 40 images: with a step of 10 there are lines at 10, 20 and 30, then the closing one.
    monkeypatch.setattr(_cli_io, "_PROGRESS_MIN_STEP", 10)
    archive, out = tmp_path / "a.skc", tmp_path / "decoded"
    assert run("compress", models["pca"], pngs, "-o", archive) == 0
    captured = capsys.readouterr()
    lines = _progress_lines(captured.err, "reading images")
    assert lines[:3] == [f"reading images: {k}/{N_IMAGES}" for k in (10, 20, 30)]
    assert lines[3].startswith(f"reading images: {N_IMAGES}/{N_IMAGES} done in ")
    assert len(lines) == 4 and "reading images" not in captured.out
    assert "bits/pixel" in captured.out  # the summary goes to stdout

    assert run("decompress", models["pca"], archive, "-o", out) == 0
    lines = _progress_lines(capsys.readouterr().err, "writing PNG files")
    assert [line.split(" done in ")[0] for line in lines] == [
        *(f"writing PNG files: {k}/{N_IMAGES}" for k in (10, 20, 30)),
        f"writing PNG files: {N_IMAGES}/{N_IMAGES}",
    ]

    assert run("compress", models["pca"], pngs, "-o", archive, "--quiet") == 0
    assert run("decompress", models["pca"], archive, "-o", out, "-q") == 0
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------------------
# IDX inputs: told apart from other files by content, raw or gzip-compressed
# --------------------------------------------------------------------------------------


def _idx_bytes(images):
    header = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in images.shape)
    return header + images.tobytes()


def test_idx_inputs_raw_or_gzip_whatever_their_name(models, mnist, tmp_path):
    data = _idx_bytes(mnist["images"][:10])
    (tmp_path / "raw-images").write_bytes(data)
    (tmp_path / "images.dat").write_bytes(gzip.compress(data))
    archive = tmp_path / "a.skc"
    inputs = [tmp_path / "raw-images", tmp_path / "images.dat"]
    assert run("compress", models["pca"], *inputs, "-o", archive, "-q") == 0
    codec = load(models["pca"])
    twice = np.concatenate([mnist["images"][:10]] * 2) / np.float32(255)
    assert archive.read_bytes() == codec.compress(twice)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x1f\x8b not really gzip", "corrupt or truncated gzip data"),
        (gzip.compress(b"\x93NUMPY not IDX"), "gzip-compressed, but not an IDX file"),
        (b"\x00\x00\x99\x03\x00\x00\x00\x01", "not an IDX file: magic 0x00009903"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x05\x00\x00\x00\x1c\x00\x00\x00\x1c\x00", "truncated"),
        ("cut gzip", "corrupt or truncated gzip data"),
    ],
    ids=["bad-gzip", "gzip-not-idx", "bad-magic", "truncated", "cut-gzip"],
)
def test_bad_idx_inputs_are_explained(models, mnist, tmp_path, capsys, content, message):
    if content == "cut gzip":  # a valid IDX file whose gzip stream stops half-way
        content = gzip.compress(_idx_bytes(mnist["images"][:10]))
        content = content[: len(content) // 2]
    path = tmp_path / "input"
    path.write_bytes(content)
    err = _assert_fails_cleanly(capsys, "compress", models["pca"], path, "-o", tmp_path / "x")
    # the error names the file and says what is wrong with it
    assert f"{path}: " in err and message in err, err


def test_compress_and_decompress_stream_their_samples(models, mnist, tmp_path, monkeypatch):
    """compress reads its inputs a slice at a time (slices crossing files), decompress
    decodes and writes a slice at a time: same bytes and arrays as in one piece."""
    import skdae._codec_cli
    import skdae.codec

    images = mnist["images"][:50]
    np.save(tmp_path / "a.npy", images[:23])
    (tmp_path / "b.gz").write_bytes(gzip.compress(_idx_bytes(images[23:])))
    monkeypatch.setattr(skdae.codec, "_CHUNK_ROWS", 7)
    monkeypatch.setattr(skdae._codec_cli, "_DECODE_ROWS", 9)
    archive = tmp_path / "a.skc"
    assert run("compress", models["ae"], tmp_path / "a.npy", tmp_path / "b.gz", "-o", archive,
               "-q") == 0
    codec = load(models["ae"])
    X = images / np.float32(255)
    assert archive.read_bytes() == codec.compress(X)
    assert run("decompress", models["ae"], archive, "-o", tmp_path / "out.npy", "--format",
               "npy", "-q") == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), codec.decompress(archive.read_bytes()),
                               rtol=1e-6, atol=1e-6)
