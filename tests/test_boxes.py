"""brainmri.boxes: the tumour boxes CSV, read and looked up as the trainer and studies do."""
from pathlib import Path

import pytest

from brainmri.boxes import CSV_NAME, box_for, boxes_csv, load_boxes

HEADER = "path,x0,y0,x1,y1,width,height\n"


def write(root: Path, rows: str) -> Path:
    path = boxes_csv(root)
    path.write_text(HEADER + rows)
    return path


def test_boxes_are_found_by_relative_path_and_by_file_name(tmp_path):
    path = write(tmp_path, "Training/glioma/Tr-gl_0001.jpg,10,20,30,40,512,512\n"
                           "Testing\\pituitary\\Te-pi_0002.jpg,1,2,3,4,256,200\n")
    assert path == tmp_path / CSV_NAME == tmp_path / "tumor_boxes.csv"
    boxes = load_boxes(path)
    want = ((10, 20, 30, 40), (512, 512))
    assert boxes["Training/glioma/Tr-gl_0001.jpg"] == boxes["Tr-gl_0001.jpg"] == want
    assert boxes["Testing/pituitary/Te-pi_0002.jpg"] == ((1, 2, 3, 4), (256, 200))   # Windows slashes
    assert box_for(tmp_path / "Training/glioma/Tr-gl_0001.jpg", tmp_path, boxes) == want
    assert box_for(Path("/elsewhere/Tr-gl_0001.jpg"), tmp_path, boxes) == want     # by name
    assert box_for(tmp_path / "Training/notumor/Tr-no_0001.jpg", tmp_path, boxes) is None


def test_a_relative_path_wins_over_another_folder_s_file_of_the_same_name(tmp_path):
    boxes = load_boxes(write(tmp_path, "Training/glioma/a.jpg,1,1,5,5,64,64\n"
                                       "Testing/glioma/a.jpg,2,2,6,6,64,64\n"))
    assert box_for(tmp_path / "Testing/glioma/a.jpg", tmp_path, boxes)[0] == (2, 2, 6, 6)
    assert boxes["a.jpg"][0] == (1, 1, 5, 5)                     # the name keeps the first row


def test_bad_rows_and_missing_files_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="boxes CSV not found"):
        load_boxes(tmp_path / CSV_NAME)
    with pytest.raises(ValueError, match="tumor_boxes.csv: bad row"):
        load_boxes(write(tmp_path, "Training/glioma/a.jpg,1,1,five,5,64,64\n"))
