"""ingestion.py as a subprocess: combining, de-duplicating, validating, recording."""

import json
import os

import pandas as pd
import pytest
from conftest import COLUMNS, assert_one_line_error, client_frame
from hypothesis import given, settings
from hypothesis import strategies as st


def read_record(workspace):
    return json.loads((workspace.path("output_folder_path") / "ingestionrecord.json").read_text())


@pytest.mark.slow
def test_combines_and_deduplicates_like_pandas(data_workspace):
    result = data_workspace.run("ingestion.py")
    assert result.returncode == 0, result.stderr
    folder = data_workspace.path("input_folder_path")
    oracle = (
        pd.concat([pd.read_csv(folder / "dataset1.csv"), pd.read_csv(folder / "dataset2.csv")])
        .drop_duplicates(keep="last")  # the newest extract's copy of a repeated row
        .reset_index(drop=True)
    )
    output = data_workspace.path("output_folder_path")
    final = pd.read_csv(output / "finaldata.csv")
    assert list(final.columns) == list(COLUMNS)
    pd.testing.assert_frame_equal(final, oracle, check_dtype=False)
    assert (output / "ingestedfiles.txt").read_text() == "dataset1.csv\ndataset2.csv\n"

    record = read_record(data_workspace)
    assert record["rows_read"] == 605 and record["rows_written"] == 600
    assert record["duplicates_dropped"] == 5
    assert [f["rows_kept"] for f in record["files"]] == [295, 305]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in record["files"])
    assert record["finaldata_sha256"]
    history = (output / "ingestionhistory.jsonl").read_text().splitlines()
    assert len(history) == 1
    assert sorted(p.name for p in output.iterdir()) == [
        "finaldata.csv",
        "finaldataextracts.csv",
        "ingestedfiles.txt",
        "ingestionhistory.jsonl",
        "ingestionrecord.json",
        "kept",
    ]
    extracts = pd.read_csv(output / "finaldataextracts.csv", dtype={"corporation": str})
    assert list(extracts["corporation"]) == list(final["corporation"].astype(str))
    assert (extracts["last_extract"] == [1] * 295 + [2] * 305).all()
    assert (
        extracts["first_extract"] == 1
    ).sum() == 300  # 295 of the first file's own, and its 5 repeated in the second


@pytest.mark.slow
def test_only_visible_csv_files_are_read_whatever_the_case(workspace):
    frame = client_frame(20, seed=4)
    workspace.write_csv("input_folder_path", "upper.CSV", frame.head(10))
    workspace.write_csv("input_folder_path", "lower.csv", frame.tail(10))
    folder = workspace.path("input_folder_path")
    (folder / ".hidden.csv").write_text("junk")
    (folder / "Icon\r").write_bytes(b"\x00\x01")
    (folder / "notes.txt").write_text("not data")
    result = workspace.run("ingestion.py")
    assert result.returncode == 0, result.stderr
    names = (workspace.path("output_folder_path") / "ingestedfiles.txt").read_text().split()
    assert names == ["lower.csv", "upper.CSV"]


@pytest.mark.slow
def test_bom_column_order_and_extra_columns(workspace):
    frame = client_frame(10, seed=5)
    shuffled = frame[
        ["exited", "number_of_employees", "corporation", "lastyear_activity", "lastmonth_activity"]
    ]
    path = workspace.path("input_folder_path") / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + shuffled.assign(region="north").to_csv(index=False).encode())
    result = workspace.run("ingestion.py")
    assert result.returncode == 0, result.stderr
    assert "dropped extra column region" in result.stderr
    final = pd.read_csv(workspace.path("output_folder_path") / "finaldata.csv")
    pd.testing.assert_frame_equal(final, frame, check_dtype=False)


BAD_FILES = {
    "missing_column.csv": (b"corporation,lastmonth_activity,exited\nabcd,1,0\n", "missing required columns"),
    "text_number.csv": (
        b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nabcd,lots,1,1,0\n",
        "lastmonth_activity: non-numeric value 'lots' (line 2)",
    ),
    "negative.csv": (
        b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nabcd,1,1,-4,0\n",
        "number_of_employees: negative value (line 2)",
    ),
    "target.csv": (
        b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nabcd,1,1,1,2\n",
        "exited: value not 0 or 1 (line 2)",
    ),
    "empty.csv": (b"", "empty file"),
    "header_only.csv": (
        b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n",
        "no data rows",
    ),
    "binary.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
    "latin1.csv": (
        b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nd\xe9f,1,1,1,0\n",
        "not UTF-8 text",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_rejected_by_name_and_the_good_one_still_ingested(workspace, name):
    good = client_frame(30, seed=6)
    workspace.write_csv("input_folder_path", "good.csv", good)
    content, reason = BAD_FILES[name]
    (workspace.path("input_folder_path") / name).write_bytes(content)
    result = workspace.run("ingestion.py")
    assert result.returncode == 3
    assert_one_line_error(result, name, reason)
    output = workspace.path("output_folder_path")
    assert (output / "ingestedfiles.txt").read_text() == "good.csv\n"
    assert len(pd.read_csv(output / "finaldata.csv")) == 30
    rejected = [f for f in read_record(workspace)["files"] if f["status"] == "rejected"]
    assert [f["name"] for f in rejected] == [name]
    assert any(reason in text for text in rejected[0]["reasons"])


@pytest.mark.slow
def test_every_problem_of_a_file_is_reported_at_once(workspace):
    workspace.write_csv("input_folder_path", "good.csv", client_frame(10, seed=7))
    (workspace.path("input_folder_path") / "many.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        "abcd,1,x,-1,0\nefgh,2,3,4,7\n"
    )
    result = workspace.run("ingestion.py")
    assert result.returncode == 3
    reasons = [f for f in read_record(workspace)["files"] if f["name"] == "many.csv"][0]["reasons"]
    assert len(reasons) == 3, reasons
    assert len([line for line in result.stderr.splitlines() if "many.csv: rejected" in line]) == 3


@pytest.mark.slow
def test_missing_feature_values_are_kept_as_missing(workspace):
    path = workspace.path("input_folder_path") / "gaps.csv"
    path.write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        "abcd,,10,3,1\nefgh,4,5,6,0\n"
    )
    assert workspace.run("ingestion.py").returncode == 0
    final = (workspace.path("output_folder_path") / "finaldata.csv").read_text().splitlines()
    assert final[1:] == ["abcd,,10,3,1", "efgh,4,5,6,0"]
    assert read_record(workspace)["missing_values"]["lastmonth_activity"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("situation", ["missing folder", "empty folder", "all rejected"])
def test_nothing_to_ingest_leaves_the_previous_output_untouched(data_workspace, situation):
    assert data_workspace.run("ingestion.py").returncode == 0
    output = data_workspace.path("output_folder_path")
    before = {
        p.name: p.read_bytes() for p in output.iterdir() if p.is_file() and p.name != "ingestionhistory.jsonl"
    }
    folder = data_workspace.path("input_folder_path")
    for path in folder.iterdir():
        path.unlink()
    if situation == "missing folder":
        folder.rmdir()
    if situation == "all rejected":
        (folder / "bad.csv").write_text("nothing,useful\n1,2\n")
    result = data_workspace.run("ingestion.py")
    assert result.returncode == 65  # InputError: nothing ingested
    assert_one_line_error(result, str(folder))
    after = {
        p.name: p.read_bytes() for p in output.iterdir() if p.is_file() and p.name != "ingestionhistory.jsonl"
    }
    assert after == before
    last = json.loads((output / "ingestionhistory.jsonl").read_text().splitlines()[-1])
    assert last["status"] == "failed"


def rows_with_copies():
    """(ten extracts of 100 rows with exact copies, a pair with a missing value among them; each
    row's extract; pandas' answers: duplicated(keep="last"), each row's first extract)."""
    import numpy as np

    frame = pd.concat([client_frame(500, seed=40), client_frame(500, seed=40).head(50)], ignore_index=True)
    frame = frame.astype({"lastmonth_activity": "Int64"})
    frame.loc[[3, 503], "lastmonth_activity"] = pd.NA
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    source = np.arange(len(frame)) // 100
    groups = frame.groupby(list(frame.columns), dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(source).groupby(groups).transform("min").to_numpy()
    return frame, source, frame.duplicated(keep="last").to_numpy(), first


def test_duplicated_rows_equals_pandas():
    """The general path (counts too large for one 64-bit key): pandas' duplicated, first extracts."""
    import numpy as np

    from attrition.data.duplicates import duplicated_rows

    frame, source, oracle_duplicated, oracle_first = rows_with_copies()
    duplicated, first = duplicated_rows(frame, source)
    np.testing.assert_array_equal(duplicated, oracle_duplicated)
    np.testing.assert_array_equal(first, oracle_first)


HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "value",
    [
        "1e300",
        "1e20",
        "1e19",
        str(2**63),
        str(2**64 - 1),
        str(2**64),
        "1" + "0" * 400,
        "inf",
        str(2**53 + 2),
        str(2**53 + 1),
    ],
)
def test_a_count_a_float64_cannot_hold_exactly_is_rejected_by_line(workspace, value):
    workspace.write_csv("input_folder_path", "good.csv", client_frame(10, seed=8))
    (workspace.path("input_folder_path") / "huge.csv").write_text(
        f"{HEADER}abcd,1,2,3,0\nefgh,{value},5,6,1\n"
    )
    result = workspace.run("ingestion.py")
    assert result.returncode == 3
    assert_one_line_error(
        result, "huge.csv: rejected: lastmonth_activity: value too large to hold exactly", "line 3"
    )
    final = pd.read_csv(workspace.path("output_folder_path") / "finaldata.csv")
    assert len(final) == 10 and final["lastmonth_activity"].max() < 2**53


@pytest.mark.slow
def test_the_largest_exact_count_is_kept_exactly(workspace):
    (workspace.path("input_folder_path") / "big.csv").write_text(
        f"{HEADER}abcd,{2**53},2,3,0\nefgh,1,5,6,1\n"
    )
    assert workspace.run("ingestion.py").returncode == 0
    lines = (workspace.path("output_folder_path") / "finaldata.csv").read_text().splitlines()
    assert lines[1] == f"abcd,{2**53},2,3,0"


@pytest.mark.slow
def test_odd_entries_named_csv_are_rejected_with_a_reason_and_the_rest_ingested(workspace, tmp_path):
    folder = workspace.path("input_folder_path")
    workspace.write_csv("input_folder_path", "good.csv", client_frame(10, seed=8))
    row = f"{HEADER}abcd,1,2,3,0\n"
    (folder / os.fsdecode(b"caf\xe9.csv")).write_text(row)
    (folder / "two\nlines.csv").write_text(row)
    (folder / "folder.csv").mkdir()
    os.mkfifo(folder / "pipe.csv")  # opening it would block the run
    outside = tmp_path / "secret.csv"
    outside.write_text(row)
    (folder / "outside.csv").symlink_to(outside)
    (folder / "inside.csv").symlink_to(folder / "good.csv")  # a link within the folder is fine
    (folder / "wide.csv").write_text(",".join(["a"] * 35_000) + "\n1\n")
    result = workspace.run("ingestion.py", timeout=60)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    for fragment in [
        "caf\\xe9.csv: rejected: file name is not valid UTF-8",
        "two\\nlines.csv: rejected: file name contains a line break",
        "folder.csv: rejected: not a regular file (a folder)",
        "pipe.csv: rejected: not a regular file (a special file)",
        "outside.csv: rejected: a link leading outside the input folder",
        "wide.csv: rejected: header line of 69,999 bytes",
    ]:
        assert_one_line_error(result, fragment)
    assert max(len(line) for line in result.stderr.splitlines()) < 1000
    output = workspace.path("output_folder_path")
    assert (output / "ingestedfiles.txt").read_text() == "good.csv\ninside.csv\n"
    record = read_record(workspace)
    assert record["files_rejected"] == 6 and os.path.getsize(output / "ingestionrecord.json") < 10_000
    assert os.fsdecode(b"caf\xe9.csv") in [
        entry["name"] for entry in record["files"]
    ]  # the real name, JSON-escaped
    assert workspace.run("ingestion.py", timeout=60).returncode == 3  # and again: nothing left broken


HEAD = b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (HEAD + b",exited\nabcd,1,1,1,0,1\n", "column 'exited' appears twice in the header"),
        (HEAD.replace(b"exited", b" corporation ") + b"\nabcd,1,1,1,abcd\n", "appears twice"),
        (
            HEAD + b"\nabcd,1,1,1,0\n=cmd|' /C calc'!A0,1,1,1,0\n",
            "spreadsheet would run as a formula (line 3)",
        ),
        (HEAD + b"\n+1,1,1,1,0\n-2,1,1,1,0\n@sum,1,1,1,0\n\tx,1,1,1,0\n", "(line 2, 3, 4, ...)"),
        (HEAD + b"\n,1,1,1,0\n", "corporation: missing values (line 2)"),
        (HEAD.replace(b"corporation", b" corporation ") + b"\n,1,1,1,0\n", "missing values (line 2)"),
        (HEAD + b'\nabcd,1,1,1,0\n"two\nlines",1,1,1,0\n', "a line break inside an ID (line 3)"),
    ],
)
def test_files_with_a_column_twice_or_formula_like_ids_are_rejected(content, reason):
    """In-process: parsing.parse_csv is the rule; a rejected file is named by the run (above)."""
    from attrition.data import parsing

    frame, problems, _ = parsing.parse_csv(content)
    assert frame is None and any(reason in problem for problem in problems), problems


def test_ids_that_look_missing_are_ids_and_cr_rows_are_rows():
    from attrition.data import parsing

    ids = [b"NA", b"null", b"None", b"N/A", b"#N/A", b"nan", b"NULL"]
    rows = b"".join(name + b",1,,3,0\r" for name in ids) + b"x" * 70_000 + b",1,2,3,1\r"
    table, problems, _ = parsing.parse_csv(HEAD + b"\r" + rows)  # 70 kB, with no LF at all
    assert problems == [] and table is not None
    frame = table.to_pandas()
    assert list(frame["corporation"][:7]) == [name.decode() for name in ids] and len(frame) == 8
    assert frame["lastyear_activity"][:7].isna().all()  # an empty count is still a missing value


# The fast path (Arrow) and the rule (pandas) on the same bytes: Arrow may only decline, never differ.
CELLS = ["0", "1", "12", " 12 ", "012", "", "NA", "null", "nan", "N/A", "None", "-1", "-0", "12.0", "1e3"]
CELLS += [
    "+3",
    "0x1F",
    "0X1f",
    "abc",
    "true",
    '"7"',
    '" 8 "',
    str(2**53),
    str(2**53 + 1),
    "\u0661\u0662",
    "1 2",
]
CLIENT_IDS = [
    "ab",
    "NA",
    "",
    "=x",
    "a b",
    '"q,r"',
    "x\ty",
    "\u00e9",
    '"two\nlines"',
    "null",
    "-1",
    " ab",
    "0x1",
]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(CLIENT_IDS),
            st.sampled_from(CELLS),
            st.sampled_from(CELLS),
            st.sampled_from(CELLS),
            st.sampled_from(["0", "1", "", "2", "NA", "1.0", " 1"]),
        ),
        max_size=6,
    ),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    header=st.sampled_from(
        [HEADER.strip(), " corporation ,lastmonth_activity,lastyear_activity,number_of_employees,exited,note"]
    ),
    bom=st.booleans(),
)
def test_arrow_reads_a_file_as_pandas_does_or_leaves_it_to_pandas(rows, ending, header, bom):
    from attrition.data import parsing

    extra = ",x" if header.endswith("note") else ""
    text = ending.join([header, *(",".join(row) + extra for row in rows)]) + ending
    data = ("\ufeff" if bom else "").encode() + text.encode()
    table, problems, notes = parsing.parse_csv(data)
    frame, expected_problems, expected_notes = parsing.parse_frame(data)
    assert (problems, notes) == (expected_problems, expected_notes)
    assert (table is None) == (frame is None)
    if frame is not None:
        pd.testing.assert_frame_equal(
            table.to_pandas(), frame.reset_index(drop=True), check_dtype=False, check_exact=True
        )


def test_arrow_accepts_what_it_should_and_declines_the_rest():
    """The fast path is taken for ordinary files (else the property above proves nothing)."""
    from attrition.data import parsing

    ordinary = (HEADER + "ab,1,2,3,0\nNA,,5, 6 ,1\n").encode()
    assert parsing.parse_arrow(ordinary) is not None
    for odd in ("ab,0x1F,2,3,0\n", "ab,+3,2,3,0\n", "ab,1,2,3,2\n", "=ab,1,2,3,0\n", ",1,2,3,0\n"):
        assert parsing.parse_arrow((HEADER + odd).encode()) is None, odd


def test_duplicate_groups_equal_pandas_duplicated_and_the_first_extract():
    import numpy as np
    import pyarrow as pa

    from attrition.data.duplicates import duplicate_groups
    from attrition.data.parsing import SCHEMA

    frame, source, oracle_duplicated, oracle_first = rows_with_copies()
    table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    kept, first = duplicate_groups(table, source)
    np.testing.assert_array_equal(kept, np.flatnonzero(~oracle_duplicated))
    np.testing.assert_array_equal(first, oracle_first[kept])
    huge = table.set_column(1, "lastmonth_activity", pa.array(np.full(len(frame), 2**52)))  # no 64-bit key
    kept_huge, _ = duplicate_groups(huge, source)
    np.testing.assert_array_equal(kept_huge, np.flatnonzero(~huge.to_pandas().duplicated(keep="last")))


@pytest.mark.slow
def test_an_archived_extract_keeps_its_clients_until_forgotten(data_workspace):
    """Moving an ingested extract out of the input folder does not drop its clients (issue 31): the
    next ingestion reads its kept copy and names it once; `--forget NAME` drops it deliberately."""
    run = data_workspace.run
    assert run("ingestion.py").returncode == 0
    folder, output = data_workspace.path("input_folder_path"), data_workspace.path("output_folder_path")
    everything = pd.read_csv(output / "finaldata.csv")
    first = folder / "dataset1.csv"
    first.rename(data_workspace.root / "dataset1.csv")  # archived
    data_workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(50, seed=30))
    result = run("ingestion.py")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("dataset1.csv: no longer in") == 1 and "--forget dataset1.csv" in result.stderr
    oracle = (  # the newest-extract rule over everything ingested
        pd.concat(
            [
                pd.read_csv(data_workspace.root / "dataset1.csv"),
                pd.read_csv(folder / "dataset2.csv"),
                pd.read_csv(folder / "dataset3.csv"),
            ]
        )
        .drop_duplicates(keep="last")
        .reset_index(drop=True)
    )
    final = pd.read_csv(output / "finaldata.csv")
    pd.testing.assert_frame_equal(final, oracle, check_dtype=False)
    assert set(everything["corporation"]) < set(final["corporation"])
    assert (output / "ingestedfiles.txt").read_text() == "dataset1.csv\ndataset2.csv\ndataset3.csv\n"
    assert [f.get("archived", False) for f in read_record(data_workspace)["files"]] == [True, False, False]
    again = run("ingestion.py")
    assert again.returncode == 0 and "no longer in" not in again.stderr  # named once, when it leaves
    # forgetting is deliberate: refused while the file is still there, then its rows go
    refused = run("ingestion.py", "--forget", "dataset2.csv")
    assert_one_line_error(refused, "dataset2.csv: still in the input folder")
    forgotten = run("ingestion.py", "--forget", "dataset1.csv")
    assert forgotten.returncode == 0, forgotten.stderr
    oracle = (
        pd.concat([pd.read_csv(folder / "dataset2.csv"), pd.read_csv(folder / "dataset3.csv")])
        .drop_duplicates(keep="last")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(pd.read_csv(output / "finaldata.csv"), oracle, check_dtype=False)
    assert_one_line_error(run("ingestion.py", "--forget", "dataset1.csv"), "no kept copy")
