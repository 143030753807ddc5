import os

import numpy as np
import pytest
from PIL import Image

from tasks.data import decode
from tasks.data.datasets import load_dataset, resolve_source
from tasks.data.store import load_cache, save_cache
from tasks.data.images import OUTSIDE_LINK, SCANNED_LINK
from tasks.data.sampling import holdout_mask, stratified_subset
from tasks.errors import DatasetError
from tests.conftest import write_image_folder, write_npz


def test_digits_are_uint8_0_255_at_32x32_with_a_stratified_split():
    data = load_dataset("digits")
    assert data.x_train.shape[1:] == (32, 32, 1) and data.x_train.dtype == np.uint8
    assert data.x_train.max() == 255 and data.x_train.min() == 0
    assert len(data.y_train) + len(data.y_test) == 1797
    assert abs(len(data.y_test) / 1797 - 0.2) < 0.01
    assert set(np.unique(data.y_test)) == set(range(10))
    assert data.shapes_train[0].tolist() == [8, 8, 1]  # the original size is kept for the gate
    assert not set(data.ids_train) & set(data.ids_test)


def test_digits_read_from_the_file_scikit_learn_ships_are_its_load_digits_without_its_import():
    from sklearn.datasets import load_digits

    from tasks.data.datasets import _digits

    images, labels = _digits()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)


def test_limit_caps_each_split_and_keeps_every_class():
    data = load_dataset("digits", limit=50)
    assert len(data.y_train) == 50 and len(data.y_test) == 50
    assert np.bincount(data.y_train).tolist() == [5] * 10


def test_fingerprint_is_stable_and_changes_with_one_pixel():
    first, second = load_dataset("digits", limit=30), load_dataset("digits", limit=30)
    assert first.fingerprint == second.fingerprint
    second.x_train[0, 0, 0, 0] ^= 1
    assert first.fingerprint != second.fingerprint


def test_cache_round_trip(tmp_path):
    data = load_dataset("digits", limit=20)
    path = save_cache(data, tmp_path)
    back = load_cache(path)
    assert back.fingerprint == data.fingerprint and back.class_names == data.class_names
    assert back.ids_test.tolist() == data.ids_test.tolist()


def test_folder_with_train_and_test(image_folder):
    data = load_dataset(str(image_folder))
    assert data.class_names == ["class_0", "class_1", "class_2"]
    assert len(data.y_train) == 18 and len(data.y_test) == 18
    assert data.ids_train[0] == "train/class_0/img_0.png"
    assert data.x_train.shape[1:] == (16, 16, 1)


def test_folder_without_test_holds_out_test_fraction(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=10, test=False)
    data = load_dataset(str(root), test_fraction=0.3)
    assert np.bincount(data.y_test).tolist() == [3, 3, 3]
    assert np.bincount(data.y_train).tolist() == [7, 7, 7]


def test_folder_of_class_folders_without_train_folder(tmp_path):
    root = tmp_path / "flat"
    write_image_folder(tmp_path / "tmp", test=False)
    (tmp_path / "tmp" / "train").rename(root)
    data = load_dataset(str(root))
    assert len(data.class_names) == 3 and len(data.y_test) > 0


def test_mixed_sizes_and_modes_are_brought_to_the_most_common(tmp_path):
    root = write_image_folder(tmp_path / "d", size=16)
    Image.new("RGB", (20, 24), (255, 0, 0)).save(root / "train" / "class_0" / "odd.png")
    data = load_dataset(str(root))
    assert data.x_train.shape[1:] == (16, 16, 3)  # one colour image makes every image RGB
    odd = list(data.ids_train).index("train/class_0/odd.png")
    assert data.shapes_train[odd].tolist() == [24, 20, 3]
    assert load_dataset(str(root), image_size=(8, 10)).x_train.shape[1:] == (8, 10, 3)


def test_npz_with_grayscale_arrays_and_class_names(tmp_path):
    path = write_npz(tmp_path / "d.npz", x_train=np.zeros((8, 10, 10), np.float32), y_train=np.arange(8) % 2,
                     x_test=np.ones((4, 10, 10), np.float32), y_test=np.arange(4) % 2,
                     class_names=np.array(["cat", "dog"]))
    data = load_dataset(str(path))
    assert data.x_train.shape == (8, 10, 10, 1) and data.x_train.dtype == np.float32
    assert data.class_names == ["cat", "dog"] and data.ids_test[1] == "x_test[1]"


def test_npz_labels_without_names_are_indexed_and_unknown_test_labels_flagged(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.array([3, 7] * 20), y_test=np.array([3, 7, 9] * 6 + [3, 7]))
    data = load_dataset(str(path))
    assert data.class_names == ["3", "7"]
    assert set(data.y_train) == {0, 1} and data.y_test[2] == -1


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing"), "dataset not found"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "no class folders"),
    (lambda p: str(write_npz(p / "d.npz", y_test=None)), "lacks y_test"),
    (lambda p: (p / "notes.txt").write_text("x") and str(p / "notes.txt"), "unsupported dataset file"),
    (lambda p: (p / "text.npz").write_text("x,y\n1,2") and str(p / "text.npz"), "not an .npz archive"),
])
def test_bad_sources_raise_one_clear_error(tmp_path, make, message):
    with pytest.raises(DatasetError, match=message):
        resolve_source(make(tmp_path))


@pytest.mark.parametrize("name, content", [
    ("empty.jpg", b""),
    ("not_an_image.png", b"hello, I am text"),
    ("truncated.png", None),  # the first 60 bytes of a real PNG: the header reads, the pixels do not
])
def test_unreadable_files_are_listed_with_a_reason_and_the_rest_is_loaded(image_folder, name, content):
    target = image_folder / "train" / "class_1" / name
    if content is None:
        content = (image_folder / "train" / "class_1" / "img_0.png").read_bytes()[:60]
    target.write_bytes(content)
    data = load_dataset(str(image_folder))
    assert len(data.y_train) == 18 and f"train/class_1/{name}" not in data.ids_train
    ((split, label, path, reason),) = data.skipped.tolist()
    assert (split, label, path) == ("train", "1", f"train/class_1/{name}") and reason
    assert str(image_folder) not in reason  # the reason names the file relative to the dataset, not the machine
    if not content:
        assert reason == "empty file (0 bytes)"


def test_a_split_with_no_readable_image_is_bad_input(tmp_path):
    root = write_image_folder(tmp_path / "d", classes=2, per_class=1)
    for png in (root / "test").rglob("*.png"):
        png.write_bytes(b"")
    with pytest.raises(DatasetError, match="no readable images in the test split"):
        load_dataset(str(root))


def test_symlinks_outside_the_dataset_are_not_followed_and_inside_ones_are(tmp_path):
    root = write_image_folder(tmp_path / "d")
    elsewhere = write_image_folder(tmp_path / "elsewhere", classes=1, per_class=2)
    (root / "train" / "class_0" / "outside.png").symlink_to(elsewhere / "train" / "class_0" / "img_0.png")
    (root / "train" / "class_0" / "away").symlink_to(elsewhere / "train" / "class_0", target_is_directory=True)
    (root / "train" / "class_1" / "inside.png").symlink_to(root / "test" / "class_1" / "img_0.png")
    (root / "extra").mkdir()
    (root / "extra" / "more.png").write_bytes((root / "train" / "class_2" / "img_0.png").read_bytes())
    (root / "train" / "class_2" / "extra").symlink_to(root / "extra", target_is_directory=True)
    (root / "train" / "class_1" / "loop").symlink_to(root / "train", target_is_directory=True)
    (root / "train" / "class_1" / "sibling").symlink_to(root / "train" / "class_0", target_is_directory=True)
    data = load_dataset(str(root))
    assert "train/class_1/inside.png" in data.ids_train and "train/class_2/extra/more.png" in data.ids_train
    assert len(data.y_train) == 18 + 2  # nothing read twice through the loop or the sibling link
    skipped = dict(zip(data.skipped[:, 2].tolist(), data.skipped[:, 3].tolist()))
    assert skipped == {"train/class_0/away": OUTSIDE_LINK, "train/class_0/outside.png": OUTSIDE_LINK,
                       "train/class_1/loop": SCANNED_LINK, "train/class_1/sibling": SCANNED_LINK}


def test_palette_and_cmyk_files_count_as_colour_and_transparency_as_alpha(tmp_path):
    root = write_image_folder(tmp_path / "d", mode="RGB")
    folder = root / "train" / "class_0"
    colour = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    colour.convert("P").save(folder / "palette.png")
    colour.convert("CMYK").save(folder / "cmyk.jpg")
    clear = colour.convert("P")
    clear.info["transparency"] = 0
    clear.save(folder / "clear.png", transparency=0)
    data = load_dataset(str(root))
    channels = {i: c for i, c in zip(data.ids_train, data.shapes_train[:, 2])}
    assert channels["train/class_0/palette.png"] == channels["train/class_0/cmyk.jpg"] == 3
    assert channels["train/class_0/clear.png"] == 4


def test_capitalised_split_folders_are_splits_not_classes(tmp_path):
    root = write_image_folder(tmp_path / "d")
    (root / "train").rename(root / "Train")
    (root / "test").rename(root / "TEST")
    data = load_dataset(str(root))
    assert data.class_names == ["class_0", "class_1", "class_2"] and len(data.y_test) == 18


def test_one_hot_rows_that_name_no_single_class_become_label_minus_one(tmp_path):
    y = np.eye(3)[np.arange(40) % 3]
    y[0], y[1], y[2] = 0, [0.5, 0.5, 0], 1  # no class, a tie, every class
    data = load_dataset(str(write_npz(tmp_path / "d.npz", classes=3, y_train=y)))
    assert data.class_names == ["0", "1", "2"]
    assert data.y_train[:4].tolist() == [-1, -1, -1, 0]


def test_a_decoded_folder_is_cached_by_file_fingerprint_and_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d")
    first = load_dataset(str(root), cache=tmp_path / "cache")
    limited = load_dataset(str(root), cache=tmp_path / "cache", limit=5)  # --limit chooses before decoding
    assert limited.fingerprint != first.fingerprint and len(limited.y_train) == 5

    def no_decoding(*args):
        raise AssertionError("decoded again although no file changed")

    monkeypatch.setattr(decode, "decode_into", no_decoding)
    again = load_dataset(str(root), cache=tmp_path / "cache")
    assert again.fingerprint == first.fingerprint and isinstance(again.x_train, np.memmap)
    assert load_dataset(str(root), cache=tmp_path / "cache", limit=5).fingerprint == limited.fingerprint
    monkeypatch.undo()
    changed = root / "train" / "class_0" / "img_0.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    reloaded = load_dataset(str(root), cache=tmp_path / "cache")
    assert reloaded.fingerprint != first.fingerprint
    assert reloaded.x_train[list(reloaded.ids_train).index("train/class_0/img_0.png")].max() == 0


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    path = write_npz(tmp_path / "d.npz", x_train=np.array([object()] * 4, dtype=object))
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(str(path))


def test_npz_label_count_mismatch(tmp_path):
    with pytest.raises(DatasetError, match="labels for"):
        load_dataset(str(write_npz(tmp_path / "d.npz", y_train=np.zeros(3))))


def test_holdout_keeps_singleton_classes_in_training_and_subset_keeps_all_classes():
    labels = np.array([0] * 10 + [1] * 5 + [2])
    held = holdout_mask(labels, 0.2, seed=0)
    assert [held[labels == c].sum() for c in range(3)] == [2, 1, 0]
    subset = stratified_subset(labels, 3, seed=0)
    assert sorted(labels[subset].tolist()) == [0, 1, 2]


def test_float_tiffs_on_the_0_1_scale_are_scaled_to_8_bit(tmp_path):
    root = write_image_folder(tmp_path / "d", size=8)
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(root / "train" / "class_0" / "float.tif")
    data = load_dataset(str(root))
    assert data.x_train[list(data.ids_train).index("train/class_0/float.tif")].max() == 128


def test_16_bit_images_are_scaled_to_8_bit_not_clipped(tmp_path):
    root = write_image_folder(tmp_path / "d", size=8)
    deep = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    Image.fromarray(deep).save(root / "train" / "class_0" / "deep.png")
    data = load_dataset(str(root))
    index = list(data.ids_train).index("train/class_0/deep.png")
    assert data.x_train[index].max() == 128


def test_decoding_on_a_pool_of_processes_gives_what_decoding_here_gives(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", mode="RGB")
    truncated = root / "train" / "class_1" / "truncated.png"  # the header reads, the pixels do not
    truncated.write_bytes((root / "train" / "class_1" / "img_0.png").read_bytes()[:60])
    here = load_dataset(str(root))
    monkeypatch.setattr(decode, "IN_PROCESS_BELOW", 0)  # every folder counts as big: worker processes decode
    monkeypatch.setattr(decode, "workers", lambda: 2)
    stages = []
    pooled = load_dataset(str(root), cache=tmp_path / "cache", progress=lambda *a: stages.append(a))
    assert isinstance(pooled.x_train, np.memmap) and np.array_equal(pooled.x_train, here.x_train)
    assert np.array_equal(pooled.x_test, here.x_test) and pooled.skipped.tolist() == here.skipped.tolist()
    assert pooled.skipped[:, 2].tolist() == ["train/class_1/truncated.png"]
    assert stages[0] == ("reading headers", 0, 37) and stages[-1] == ("decoding", 37, 37)


def test_jpegs_decode_fast_as_pillow_would_and_what_the_fast_path_refuses_goes_through_pillow(tmp_path):
    from tasks.data.images import _jpeg_into, decode_into
    from tests.photos import photo

    rng = np.random.default_rng(0)
    colour = tmp_path / "photo.jpg"
    photo(1, 500, 375, rng).save(colour, quality=85)
    photo(2, 375, 500, rng).convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo(4, 500, 375, rng).save(tmp_path / "png.jpg", format="PNG")  # named as a JPEG, which it is not
    photo(3, 500, 375, rng).convert("L").save(tmp_path / "gray.jpg")  # a grey JPEG in a colour folder
    data = colour.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[:len(data) * 2 // 3])  # a header and two thirds of the scan

    def pillow(path):  # the reference: Pillow's own reduced decode, then the same resize
        with Image.open(path) as image:
            image.draft("RGB", (116, 87))
            return np.asarray(image.convert("RGB").resize((128, 96), Image.Resampling.BILINEAR))

    for name in ("photo.jpg", "cmyk.jpg", "gray.jpg", "png.jpg"):
        out = np.zeros((96, 128, 3), np.uint8)
        assert decode_into(str(tmp_path / name), "RGB", (96, 128), out) is None
        assert np.abs(out.astype(int) - pillow(tmp_path / name)).mean() < 1.5, name
    out = np.zeros((96, 128, 3), np.uint8)
    assert decode_into(str(tmp_path / "truncated.jpg"), "RGB", (96, 128), out).startswith("image file is truncated")
    fast = [_jpeg_into(str(tmp_path / name), "RGB", (96, 128), out) for name in ("photo.jpg", "cmyk.jpg",
                                                                                 "truncated.jpg", "png.jpg")]
    assert fast == [True, True, False, False]  # the last two went through Pillow above


def test_a_val_folder_is_the_validation_split_and_without_a_test_folder_the_test_share_comes_from_train(tmp_path):
    from tasks.training.grid import BASELINE
    from tasks.training.train import validation_carve

    root = write_image_folder(tmp_path / "d", per_class=10)  # train/ and test/
    (root / "test").rename(root / "val")  # train/ and val/: val is validation now, not the test split
    data = load_dataset(str(root), limit=12)
    own = data.ids_train[data.val_train]
    assert len(own) and all(i.startswith("val/") for i in own)
    assert not any(i.startswith("val/") for i in np.delete(data.ids_train, data.val_train))
    assert len(data.y_train) <= 12 and all(i.startswith("train/") for i in data.ids_test)  # held out of train/
    fit, val = validation_carve(data.y_train, data.class_names, BASELINE, data.val_train)
    assert val.tolist() == sorted(data.val_train.tolist()) and not set(fit) & set(val)
    cached = load_dataset(str(root), limit=12, cache=tmp_path / "cache")
    assert np.array_equal(load_cache(cached.cached_at).val_train, data.val_train)
