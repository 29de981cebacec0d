"""brainmri.scans: DICOM series (zip, folder), multi-frame DICOM and NIfTI volumes as ordered
slice stacks, and a clear ImageLoadError for every bad scan. Every file is made here by pydicom
and nibabel."""
from __future__ import annotations

import copy
import io
import random
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIB_DATA

from brainmri import mri_check
from brainmri.io import ImageLoadError, describe, load_image
from brainmri.scans import Limits, SeriesChoice, is_archive, is_scan, list_series, read_scan

from .synthetic import dicom_series, dicom_slice, head_volume, nifti, scan, zipped


def squares(n: int = 8, size: int = 48) -> np.ndarray:
    """(n, size, size) uint16 whose slice k holds a bright square of side 6 + 4k: its area
    tells the slice's true place in the stack."""
    volume = np.full((n, size, size), 20, np.uint16)
    for k in range(n):
        volume[k, 4:10 + 4 * k, 4:10 + 4 * k] = 1000
    return volume


def areas(scan_) -> list[int]:
    return [int((np.asarray(s) > 128).sum()) for s in scan_.slices]


def shuffled_zip(files: list[bytes], seed: int = 0) -> bytes:
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    return zipped({f"export/IM{random.Random(k).randrange(10**6):06d}": files[k] for k in order})


# ----------------------------------------------------------------------------- DICOM series
@pytest.mark.parametrize("orientation, plane", [((1, 0, 0, 0, 1, 0), "axial"),
                                                ((0, 1, 0, 0, 0, -1), "sagittal"),
                                                ((0.96, 0.28, 0, 0, 0, -1), "coronal")])
def test_shuffled_series_is_ordered_along_the_normal(orientation, plane):
    files = dicom_series(squares(), spacing=3.0, orientation=orientation, origin=(10, -40, 25))
    for k, f in enumerate(files):                     # InstanceNumber against the position order
        ds = pydicom.dcmread(io.BytesIO(f))
        ds.InstanceNumber = len(files) - k
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files[k] = buf.getvalue()
    s = read_scan(shuffled_zip(files))
    assert len(s) == 8 and s.source == "DICOM series" and s.description == "T2 AX"
    assert areas(s) == sorted(areas(s)) and len(set(areas(s))) == 8
    assert np.allclose(np.diff(s.positions), 3.0) and s.spacing == pytest.approx(3.0)
    assert s.plane == plane
    assert all(im.mode == "L" and im.size == (48, 48) and im.info["modality"] == "MR" for im in s.slices)
    assert s.notes == ()


def test_a_folder_reads_as_its_zip(tmp_path):
    files = dicom_series(squares(5))
    for k, f in enumerate(files):
        (tmp_path / f"slice{4 - k}.dcm").write_bytes(f)
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    a, b = read_scan(tmp_path), read_scan(shuffled_zip(files))
    assert areas(a) == areas(b) == sorted(areas(a))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.slices, b.slices))
    assert is_scan(tmp_path)


def test_instance_number_orders_a_series_without_positions():
    volume = squares(6)
    files = [dicom_slice(volume[k], instance=k + 1, position=None, orientation=None) for k in range(6)]
    s = read_scan(shuffled_zip(files, seed=3))
    assert areas(s) == sorted(areas(s)) and np.isnan(s.spacing) and s.plane == ""
    assert any("ordered by InstanceNumber" in n for n in s.notes)


def test_empty_slices_stay_dark_under_one_window_for_the_series():
    s = read_scan(zipped({f"{k}.dcm": f for k, f in enumerate(dicom_series(head_volume(10)))}))
    assert np.asarray(s.slices[0]).max() < 10 and np.asarray(s.slices[5]).max() == 255


def test_several_series_are_listed_for_the_user_to_pick():
    t2 = dicom_series(squares(4), series="7", description="T2 AX", number=3)
    t1 = dicom_series(squares(6)[:, ::-1], series="8", description="T1 post", number=5)
    data = zipped({**{f"a/{k}": f for k, f in enumerate(t2)}, **{f"b/{k}": f for k, f in enumerate(t1)}})
    with pytest.raises(SeriesChoice, match=r"2 series; pick one: 1: T2 AX \(4 files, MR\); "
                                           r"2: T1 post \(6 files, MR\)") as choice:
        read_scan(data)
    assert [s.label() for s in choice.value.series] == [s.label() for s in list_series(data)]
    assert len(read_scan(data, series=2)) == 6 and read_scan(data, series="2").description == "T1 post"
    picked = choice.value.series[0]
    assert len(read_scan(data, series=picked.key)) == 4
    with pytest.raises(ImageLoadError, match="no series '9' here"):
        read_scan(data, series="9")


def test_a_ct_series_is_read_but_refused_slice_by_slice_as_a_single_ct_file_is():
    s = read_scan(zipped({f"{k}.dcm": f for k, f in enumerate(
        dicom_series(head_volume(6), modality="CT"))}))
    assert s.modality == "CT" and all(im.info["modality"] == "CT" for im in s.slices)
    assert not any(mri_check.check(im).ok for im in s.slices)


def test_a_corrupt_file_inside_the_zip_is_skipped_and_named():
    files = dicom_series(squares(6))
    files[2] = files[2][: len(files[2]) // 2]              # truncated inside its pixel data
    data = zipped({**{f"s/{k}.dcm": f for k, f in enumerate(files)}, "s/README.txt": b"notes",
                   "s/broken.dcm": b"\0" * 128 + b"DICM" + b"\xff" * 40})
    s = read_scan(data)
    assert len(s) == 5 and areas(s) == sorted(areas(s))
    notes = " ".join(s.notes)
    assert "s/2.dcm" in notes and "s/broken.dcm" in notes and "damaged or truncated" in notes
    assert "1 file that is not a DICOM image ignored" in notes and "a slice may be missing" in notes


def test_slices_must_agree_in_size_orientation_and_position():
    base = dicom_series(squares(4))
    other_size = dicom_slice(np.zeros((32, 32), np.uint16), instance=9, position=(0, 0, 40))
    with pytest.raises(ImageLoadError, match="not all the same size \\(32x32, 48x48\\)"):
        read_scan(zipped({f"{k}": f for k, f in enumerate(base + [other_size])}))
    tilted = dicom_slice(squares(1)[0], instance=9, position=(0, 0, 40), orientation=(1, 0, 0, 0, 0, -1))
    with pytest.raises(ImageLoadError, match="do not share one orientation"):
        read_scan(zipped({f"{k}": f for k, f in enumerate(base + [tilted])}))
    echo = dicom_slice(squares(1)[0], instance=9, position=(0, 0, 5.0))
    with pytest.raises(ImageLoadError, match="share one position .*echoes"):
        read_scan(zipped({f"{k}": f for k, f in enumerate(base + [echo])}))


def test_archives_without_images_and_damaged_archives_are_named():
    with pytest.raises(ImageLoadError, match="no DICOM image found .*1 file that is not a DICOM image"):
        read_scan(zipped({"a.txt": b"hello"}))
    with pytest.raises(ImageLoadError) as refused:
        read_scan(zipped({"a.txt": b"hello"}))
    assert "picture" not in str(refused.value)
    # slices exported as pictures and zipped: said to be pictures, and where they are answered
    for files, said in (({"1.png": _png(), "2.png": _png()}, "2 files .* all are pictures: a picture is one "
                         "slice, answered on its own; the batch command answers a folder of them"),
                        ({"1.png": _png(), "a.txt": b"hi"}, "2 files .*; 1 is a picture: "),
                        ({"1.png": _png()}, "1 file .*; it is a picture: ")):
        for read in (read_scan, list_series):
            with pytest.raises(ImageLoadError, match=said):
                read(zipped(files))
    mixed = read_scan(zipped({f"{k}.dcm": f for k, f in enumerate(dicom_series(squares(3)))} | {"key.png": _png()}))
    assert "1 file that is not a DICOM image ignored" in mixed.notes and len(mixed) == 3
    with pytest.raises(ImageLoadError, match="the .zip archive is damaged"):
        read_scan(zipped({"a.dcm": dicom_slice(squares(1)[0])})[:-30])
    with pytest.raises(ImageLoadError, match="single picture, not a scan"):
        read_scan(_png())
    pages = io.BytesIO()
    scan(0, size=32).save(pages, "TIFF", save_all=True, append_images=[scan(1, size=32)])
    with pytest.raises(ImageLoadError, match="a TIFF of 2 pages is read one page at a time"):
        read_scan(pages.getvalue())


def _png() -> bytes:
    buf = io.BytesIO()
    scan(0, size=32).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- bombs
def test_zip_bomb_is_refused_by_its_declared_size_before_it_is_read():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("bomb.dcm", "w", force_zip64=True) as f:
            block = bytes(2**20)
            for _ in range(60):                            # 60 MiB of zeros, ~60 KiB packed
                f.write(block)
    assert len(buf.getvalue()) < 2**20
    with pytest.raises(ImageLoadError, match="bomb.dcm unpacks to more than 50 MiB"):
        read_scan(buf.getvalue())


def test_limits_on_total_bytes_files_and_slices():
    files = {f"{k}.dcm": f for k, f in enumerate(dicom_series(squares(6)))}
    data = zipped(files)
    size = len(next(iter(files.values())))
    with pytest.raises(ImageLoadError, match="the scan unpacks to more than"):
        read_scan(data, limits=Limits(total_bytes=3 * size))
    with pytest.raises(ImageLoadError, match="more than 4 files"):
        read_scan(data, limits=Limits(files=4))
    with pytest.raises(ImageLoadError, match="6 slices, over the limit of 5"):
        read_scan(data, limits=Limits(slices=5))
    with pytest.raises(ImageLoadError, match="over the limit of 10,000 voxels"):
        read_scan(data, limits=Limits(voxels=10_000))
    with pytest.raises(ImageLoadError, match="over the limit"):
        read_scan(data, limits=Limits(upload_bytes=len(data) - 1))


def test_an_archive_listing_far_more_entries_than_a_scan_has_files_is_refused_unparsed():
    """zipfile parses the whole central directory before any file is counted: the end
    record's count and the directory's size are checked first, with room for what macOS
    adds; a count that lies does not hide a long list."""
    limits = Limits(files=2)
    fits = zipped({f"__MACOSX/._{k}": b"" for k in range(6)} | {"0.dcm": b"", "1.dcm": b""})
    with pytest.raises(ImageLoadError, match="no DICOM image found"):       # 8 entries: allowed
        read_scan(fits, limits=limits)
    many = zipped({f"{k}": b"" for k in range(200)}, zipfile.ZIP_STORED)
    with pytest.raises(ImageLoadError, match="lists 200 entries in a directory of 9 KiB, more than a scan of 2 files"):
        read_scan(many, limits=limits)
    lying = bytearray(many)
    end = lying.rindex(b"PK\x05\x06")
    lying[end + 8:end + 12] = (1).to_bytes(2, "little") * 2        # "1 entry", same directory
    with pytest.raises(ImageLoadError, match="lists 1 entry in a directory of 9 KiB"):
        read_scan(bytes(lying), limits=limits)


def test_a_member_that_unpacks_past_its_declared_size_is_refused():
    content = dicom_slice(squares(1)[0])
    data = bytearray(zipped({"a.dcm": content}, zipfile.ZIP_STORED))
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    for offset in (local + 22, central + 24):              # uncompressed size: claim 100 bytes
        data[offset:offset + 4] = (100).to_bytes(4, "little")
    with pytest.raises(ImageLoadError, match="a.dcm \\(cannot be unpacked: the archive is damaged"):
        read_scan(bytes(data))


# ----------------------------------------------------------------------------- multi-frame
def test_multiframe_dicom_frames_become_slices_in_plane_position_order():
    volume = squares(5)
    ds = pydicom.dcmread(io.BytesIO(dicom_slice(volume[0])))
    order = [3, 0, 4, 1, 2]                                # frames stored out of order
    ds.NumberOfFrames = 5
    ds.PixelData = np.ascontiguousarray(volume[order]).tobytes()
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    frames = []
    for k in order:
        position, orient, group = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        orient.ImageOrientationPatient = [1.0, 0, 0, 0, 1.0, 0]
        group.PlanePositionSequence, group.PlaneOrientationSequence = Sequence([position]), Sequence([orient])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    assert is_scan(data)
    s = read_scan(data)
    assert s.source == "DICOM multi-frame" and len(s) == 5 and s.plane == "axial"
    assert areas(s) == sorted(areas(s)) and list(s.positions) == [0, 2, 4, 6, 8]
    assert len(read_scan(zipped({"one.dcm": data}))) == 5
    # its frames make a volume (cut like a series'), too thin here for a coronal picture: 5 x 2 mm
    assert s.acquired == "axial"
    for source in (data, zipped({"one.dcm": data})):
        with pytest.raises(ImageLoadError, match="only 48x10 pixels"):
            read_scan(source, axis=1)


def test_legacy_multiframe_without_frame_positions_keeps_frame_order():
    volume = squares(4)[::-1]
    ds = pydicom.dcmread(io.BytesIO(dicom_slice(volume[0])))
    ds.NumberOfFrames, ds.PixelData = 4, np.ascontiguousarray(volume).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    s = read_scan(buf.getvalue())
    assert areas(s) == sorted(areas(s), reverse=True) and s.notes == ()


def test_a_multiframe_whose_frame_count_lies_is_refused_as_damaged_before_any_frame_is_built():
    """NumberOfFrames above what the pixel data holds (a truncated file, or a header that lies):
    refused by what it is, whole scan or one slice, native or compressed, and at once (the old
    reader built a slice per declared frame first, and a count in the billions hung it)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless
    volume = squares(4)
    native = pydicom.dcmread(io.BytesIO(dicom_slice(volume[0])))
    native.NumberOfFrames, native.PixelData = 4, np.ascontiguousarray(volume).tobytes()
    rle = copy.deepcopy(native)              # a shallow copy would share the file meta
    rle.compress(RLELossless)
    many = copy.deepcopy(rle)                # one (empty) fragment per frame: believed
    many.NumberOfFrames, many.PixelData = 600, encapsulate([b"\0\0"] * 600)
    for ds, declared, held in ((native, 100_000, 4), (rle, 10**9, 4), (native, 5, 4)):
        liar = copy.deepcopy(ds)
        liar.NumberOfFrames = declared
        buf = io.BytesIO()
        liar.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
        said = f"damaged or truncated: its header declares {declared:,} frames, its pixel data holds {held}"
        for read in (read_scan, lambda d: read_scan(zipped({"a.dcm": d})), load_image, describe):
            with pytest.raises(ImageLoadError, match=said):
                read(data)
    buf = io.BytesIO()
    many.save_as(buf, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="600 slices, over the limit of 512"):
        read_scan(buf.getvalue())


def test_single_frame_dicom_and_plain_images_are_not_scans():
    assert not is_scan(dicom_slice(squares(1)[0])) and not is_scan(_png())
    assert len(read_scan(dicom_slice(squares(1)[0]))) == 1


def test_archives_are_zips_and_folders(tmp_path):
    multi = nifti(np.zeros((8, 8, 4), np.float32))
    assert is_archive(tmp_path) and is_archive(zipped({"a.dcm": dicom_slice(squares(1)[0])}))
    assert is_scan(multi) and not is_archive(multi)                 # a volume: a scan, one file
    assert not any(is_archive(x) for x in (_png(), b"", tmp_path / "missing.zip", np.zeros((4, 4))))


# ----------------------------------------------------------------------------- NIfTI
def test_nifti_slices_along_each_axis_are_shown_radiologically():
    # voxel axes (i, j, k) -> (anterior, superior, left): an acquisition stored sideways
    affine = np.array([[0, 0, -1, 30], [1, 0, 0, -20], [0, 1, 0, -10], [0, 0, 0, 1]], float)
    volume = np.zeros((30, 40, 20), np.float32)          # (A, S, L) extents 30, 40, 20
    volume[22:, 32:, :4] = 1.0                             # anterior, superior, on the right
    data = nifti(volume, affine)
    assert is_scan(data)
    for axis, (count, shape) in enumerate([(20, (40, 30)), (30, (40, 20)), (40, (30, 20))]):
        s = read_scan(data, axis=axis)
        assert s.plane == ("sagittal", "coronal", "axial")[axis] and len(s) == count
        assert all(np.asarray(im).shape == shape for im in s.slices)
        assert np.all(np.diff(s.positions) > 0)
        last, first = np.asarray(s.slices[-1]), np.asarray(s.slices[0])
        assert first.max() == 0 and last[:4, :4].min() == 255 and last[-4:, -4:].max() == 0


def test_a_nifti_volume_is_read_in_the_plane_it_was_acquired_in():
    """A sagittal stack of 5 mm slices was cut axially: 12 px wide pictures of 1 mm by 5 mm
    pixels, squashed to a sliver the model then stretched. It is read sagittally now; a plane
    across its slices, asked for, comes with square pixels."""
    volume = np.random.default_rng(0).random((12, 48, 40)).astype(np.float32)   # (L-R, A-P, S-I)
    sagittal = nifti(volume, np.diag([5.0, 1.0, 1.0, 1.0]))
    s = read_scan(sagittal)
    assert s.plane == "sagittal" and len(s) == 12
    assert all(im.size == (48, 40) for im in s.slices)                          # A wide, S high
    assert np.allclose(np.diff(s.positions), 5.0)
    assert describe(sagittal).frames == 12 and list_series(sagittal)[0].files == 12
    assert load_image(sagittal).size == (48, 40)
    axial = read_scan(sagittal, axis=2)
    assert len(axial) == 40 and axial.slices[0].size == (60, 48)                # 12 x 5 mm wide
    # either way the scan says how it was acquired, and that it can be cut in another plane
    assert (s.acquired, axial.acquired, axial.plane) == ("sagittal", "sagittal", "axial")
    assert s.volume and axial.volume
    assert load_image(sagittal, axis=2).size == (60, 48)
    absurd = nifti(volume, np.diag([1e5, 1.0, 1.0, 1.0]))                        # 100 m slices
    for read in (read_scan, load_image):
        with pytest.raises(ImageLoadError, match="over the limit of"):
            read(absurd, axis=2)                                                # before any pixel
    # a header that says every voxel is 1 mm: far the fewest voxels give the slice axis
    assert read_scan(nifti(volume)).plane == "sagittal"
    # one sagittal slice stored as (1, A, S) was cut into 48 axial slivers 1 px wide, refused
    one = read_scan(nifti(volume[:1]))
    assert (one.plane, len(one), one.slices[0].size) == ("sagittal", 1, (48, 40))
    # isotropic and about as many voxels each way: axial, as before
    assert read_scan(nifti(np.zeros((30, 36, 24), np.float32))).plane == "axial"


def test_nifti_volume_matches_nibabels_canonical_orientation():
    path = Path(NIB_DATA) / "anatomical.nii"
    canonical = nib.as_closest_canonical(nib.load(path)).get_fdata()
    s = read_scan(path)
    assert len(s) == canonical.shape[2] and s.source == "NIfTI-1" and s.description == "anatomical.nii"
    k = 12
    expected = np.fliplr(np.rot90(canonical[:, :, k]))    # radiological: the patient's right on the left
    got = np.asarray(s.slices[k]).astype(float)
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99


def test_four_d_nifti_is_refused_with_what_to_do():
    data = nifti(np.zeros((16, 16, 8, 3), np.float32))
    assert not is_scan(data)
    with pytest.raises(ImageLoadError, match="4-D \\(16x16x8x3: 3 volumes.*fslroi"):
        read_scan(data)


@pytest.mark.parametrize("voxels, said", [
    (np.zeros((8, 8, 4), np.complex64), "complex numbers .*magnitude"),
    (np.zeros((8, 8, 4), [("R", "u1"), ("G", "u1"), ("B", "u1")]), "colour \\(RGB\\) voxels")])
def test_nifti_voxels_that_are_not_one_real_number_are_refused(voxels, said):
    """Complex volumes lost their imaginary part and RGB ones were called damaged."""
    data = nifti(voxels)
    assert not is_scan(data)
    for read in (read_scan, load_image):
        with pytest.raises(ImageLoadError, match=said):
            read(data)


def test_a_nifti_volume_without_one_finite_voxel_is_refused_a_few_are_read():
    """An all-NaN volume was read as a scan of empty slices, each 'outside the head'."""
    empty = np.full((16, 16, 4), np.nan, np.float32)
    for read in (read_scan, load_image):
        with pytest.raises(ImageLoadError, match="no values: every voxel is NaN or infinite"):
            read(nifti(empty))
    holes = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    holes[:4] = np.nan
    assert len(read_scan(nifti(holes)).slices) == 4


def test_nifti_limits():
    data = nifti(np.zeros((32, 32, 20), np.float32))
    with pytest.raises(ImageLoadError, match="20 slices, over the limit of 10"):
        read_scan(data, limits=Limits(slices=10))
    with pytest.raises(ImageLoadError, match="over the limit of 1,000 voxels"):
        read_scan(data, limits=Limits(voxels=1000))
    with pytest.raises(ImageLoadError, match="unpacks to more than"):
        read_scan(data, limits=Limits(total_bytes=2**10))


def test_planes_are_named_as_users_choose_them_and_only_volumes_can_be_recut():
    """`axis_of` reads the names the CLI and the app offer; a DICOM series is read as stored
    (no `acquired` plane: no other plane to offer), a NIfTI volume in any."""
    from brainmri.volumes import ACQUIRED, PLANE_CHOICES, axis_of
    assert PLANE_CHOICES == (ACQUIRED, "sagittal", "coronal", "axial")
    assert [axis_of(p) for p in (None, "", ACQUIRED, "sagittal", "coronal", "axial")] == \
        [None, None, None, 0, 1, 2]
    with pytest.raises(ImageLoadError, match="plane must be one of acquired, sagittal, coronal, axial"):
        axis_of("oblique")
    series = read_scan(zipped({f"IM{k}": f for k, f in enumerate(dicom_series(head_volume(6)))}))
    assert series.plane == "axial" and series.acquired == "axial" and series.volume
    unordered = zipped({f"IM{k}": dicom_slice(v, instance=k + 1, position=None, orientation=None)
                        for k, v in enumerate(head_volume(6))})
    assert read_scan(unordered).acquired == "" and not read_scan(unordered).volume


def test_a_dicom_series_is_cut_in_another_plane_as_viewers_do():
    """An axial series of parallel, evenly spaced slices is a volume: asked for coronal or
    sagittal it is cut like a NIfTI volume (radiological display: superior up, the patient's
    right on the left, anterior on the left of a sagittal slice; square pixels), each slice
    keeping the series' Modality; asked for its own plane, it is read as stored. A series with
    a slice missing, or without positions, is refused another plane, saying why."""
    k, r, c = 20, 48, 40                       # slices (inferior -> superior), rows (A -> P), columns (R -> L)
    volume = np.full((k, r, c), 100, np.uint16)
    volume[15:18, 4:8, 3:7] = 4000             # a bright block: superior, anterior, on the patient's right
    files = dicom_series(volume, spacing=2.5)  # axial: columns toward the left, rows toward the back
    stored = read_scan(zipped({f"IM{i}": f for i, f in enumerate(files)}), axis=2)
    assert (stored.plane, stored.acquired, len(stored), stored.slices[0].size) == ("axial", "axial", 20, (40, 48))
    coronal = read_scan(zipped({f"IM{i}": f for i, f in enumerate(files)}), axis=1)
    assert (coronal.plane, coronal.acquired, coronal.source, len(coronal)) == ("coronal", "axial", "DICOM series", 48)
    assert coronal.slices[0].size == (40, 50) and coronal.slices[0].info["modality"] == "MR"   # 20 x 2.5 mm high
    bright = [i for i, im in enumerate(coronal.slices) if np.asarray(im).max() > 200]
    assert bright == list(range(40, 44))       # posterior -> anterior: rows 7..4 from the back
    ys, xs = np.nonzero(np.asarray(coronal.slices[41]) > 200)
    assert ys.max() < 25 and xs.max() < 20     # superior half, the image's left (patient's right)
    sagittal = read_scan(zipped({f"IM{i}": f for i, f in enumerate(files)}), axis=0)
    assert (sagittal.plane, len(sagittal), sagittal.slices[0].size) == ("sagittal", 40, (48, 50))
    ys, xs = np.nonzero(np.asarray(sagittal.slices[[np.asarray(im).max() for im in sagittal.slices].index(255)]) > 200)
    assert ys.max() < 25 and xs.max() < 24     # superior, anterior on the left
    # each file with its own window: as stored each keeps it, cut they share one (no banding)
    windowed = []
    for i, f in enumerate(files):
        ds = pydicom.dcmread(io.BytesIO(f))
        ds.WindowCenter, ds.WindowWidth = 1000 + 100 * i, 2000
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        windowed.append(buf.getvalue())
    banded = zipped({f"IM{i}": f for i, f in enumerate(windowed)})
    as_stored = read_scan(banded)
    assert len({int(np.asarray(im)[0, 0]) for im in as_stored.slices}) > 1     # 100 shown darker and darker
    background = np.asarray(read_scan(banded, axis=1).slices[0])[:, 20:]       # 100 everywhere there
    assert background.min() == background.max()
    gapped = zipped({f"IM{i}": f for i, f in enumerate(files) if i != 9})
    assert read_scan(gapped).acquired == ""
    with pytest.raises(ImageLoadError, match="shown only as stored \\(axial\\), not cut in the coronal "
                                             "plane: its slices are unevenly spaced"):
        read_scan(gapped, axis=1)
    with pytest.raises(ImageLoadError, match="its files give no position"):
        read_scan(zipped({f"IM{i}": dicom_slice(v, instance=i + 1, position=None, orientation=None)
                          for i, v in enumerate(volume)}), axis=1)


def test_dicom_pixels_that_are_not_square_are_made_square():
    """A DICOM whose rows lie 0.5 mm apart and columns 1 mm (PixelSpacing [0.5, 1.0]) was shown
    as stored, squashed to half its width; now its pixels are made square, in a single file and
    along a series alike (PixelAspectRatio when there is no PixelSpacing; nonsense: as stored),
    and the stretched size is checked before any slice is decoded."""
    from brainmri.volumes import pixel_sides
    grey = np.asarray(head_volume(3, size=64, empty=0)[1])[:40]                 # 40 high, 64 wide
    wide = dicom_slice(grey, pixel_spacing=(0.5, 1.0))
    assert load_image(wide).size == (128, 40)
    series = read_scan(zipped({f"IM{k}": f for k, f in enumerate(
        dicom_series(np.stack([grey] * 4), pixel_spacing=(0.5, 1.0)))}))
    assert len(series) == 4 and {im.size for im in series.slices} == {(128, 40)}
    assert series.slices[0].info["modality"] == "MR"
    assert load_image(dicom_slice(grey, pixel_spacing=(0.3, 0.3))).size == (64, 40)   # square
    ratio = pydicom.dcmread(io.BytesIO(dicom_slice(grey, pixel_spacing=None)))
    ratio.PixelAspectRatio = [2, 1]                                             # tall pixels
    assert pixel_sides(ratio) == (2.0, 1.0)
    for nonsense in ([0.0, 1.0], [-1.0, 1.0], [1.0]):
        ds = pydicom.dcmread(io.BytesIO(dicom_slice(grey)))
        ds.PixelSpacing = nonsense
        assert pixel_sides(ds) == (1.0, 1.0)
    stored = dicom_slice(grey, pixel_spacing=(2.5, 1.0))                        # "2.5\\1.0"
    assert b"2.5\\1.0" in stored
    assert load_image(stored.replace(b"2.5\\1.0", b"x.y\\1.0")).size == (64, 40)   # unreadable
    with pytest.raises(ImageLoadError, match="over the limit"):
        read_scan(zipped({f"IM{k}": f for k, f in enumerate(
            dicom_series(np.stack([grey] * 2), pixel_spacing=(1e-4, 10.0)))}))


def test_a_tilted_volume_says_its_slices_follow_its_own_axes():
    """A volume rotated 20 degrees about the left-right axis (an axial series along the AC-PC
    line, say) is cut along its own axes, not resampled: the scan says so; squared: no note."""
    import math
    volume = np.random.default_rng(0).random((40, 40, 12)).astype(np.float32)
    t = math.radians(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)],
                               [0, math.sin(t), math.cos(t)]]) @ np.diag([1.0, 1.0, 4.0])
    tilted = read_scan(nifti(volume, affine))
    assert tilted.plane == "axial" and any("tilted 20 degrees" in n and "axial slices follow" in n
                                           for n in tilted.notes)
    assert not any("tilted" in n for n in read_scan(nifti(volume, np.diag([1.0, 1.0, 4.0, 1.0]))).notes)
