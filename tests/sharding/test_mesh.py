"""`--mesh` text → MeshConfig, with errors that say what is wrong."""

import pytest

from recjax.cli import main
from recjax.sharding.mesh import MeshConfig, make_mesh, parse_mesh


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data=2,model=4", MeshConfig(data=2, model=4)),
        (" model = 4 ", MeshConfig(data=-1, model=4)),
        ("data=8", MeshConfig(data=8, model=1)),
        ("model=-1,data=1", MeshConfig(data=1, model=-1)),
    ],
)
def test_parse_mesh(text, expected):
    assert parse_mesh(text) == expected


def test_parsed_mesh_takes_the_remaining_devices():
    assert dict(make_mesh(parse_mesh("model=2")).shape) == {"data": 4, "model": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data=2,expert=4", "unknown axis 'expert'"),
        ("data=two", "size of 'data' must be an integer"),
        ("model=0", "must be positive or -1"),
        ("data=-1,model=-1", "at most one axis may be -1"),
        ("model=-1", r"at most one axis may be -1 \(an omitted data axis is -1\)"),
        ("data=2,data=4", "'data' given twice"),
        ("data:2", "expected AXIS=SIZE"),
        ("", "expected AXIS=SIZE"),
    ],
)
def test_parse_mesh_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mesh(text)


def test_bad_mesh_flag_is_a_one_line_cli_error(capsys):
    assert main(["train", "--mesh", "data=2,expert=4"]) == 1
    assert capsys.readouterr().err == (
        "recjax train: error: Mesh 'data=2,expert=4': unknown axis 'expert' (axes: data, model).\n"
    )
