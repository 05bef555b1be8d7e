"""The CRD generator: committed files are current, and every schema feature renders structurally.

A throwaway kind (``Gadget``) exercises each translation the generator does, so the
tests do not depend on which real kinds exist yet; the real kinds are checked by
rendering them and comparing with the committed ``crds/`` and chart copies.
"""

from __future__ import annotations

import enum
import pathlib
from typing import Annotated, Any, ClassVar, Literal

import pydantic
import pytest
import yaml

from mlops_operator.api import common
from mlops_operator.crdgen import checks, cli, crd
from mlops_operator.crdgen import schema as schema_mod

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT_DIRS = (ROOT / "crds", ROOT / "charts" / "mlops-operator" / "crds")
INVALID_DIR = ROOT / "tests" / "integration" / "invalid"


# ---------------------------------------------------------------------------------------------
# A throwaway kind with every feature the generator translates
# ---------------------------------------------------------------------------------------------
class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Part(common.ApiModel):
    """A part of a gadget."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.low <= self.high",
                    "message": "part.low must not exceed part.high",
                    "fieldPath": ".low",
                }
            ]
        }
    )

    name: str = pydantic.Field(min_length=1, max_length=63, description="Name of the part.")
    low: int = pydantic.Field(default=0, ge=0, description="Low end.")
    high: int = pydantic.Field(default=10, le=100, description="High end.")


class GadgetSpec(common.ApiModel):
    """What a gadget should be."""

    main_part: Part = pydantic.Field(description="The main part (field description wins over the docstring).")
    spare_part: Part | None = pydantic.Field(
        default=None,
        description="An optional part.",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self.name != 'forbidden'"}]},
    )
    parts: list[Part] = pydantic.Field(
        default_factory=list,
        max_length=8,
        description="More parts, keyed by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    mode: Literal["fast", "slow"] = pydantic.Field(default="fast", description="How fast.")
    fixed: Literal["only"] = pydantic.Field(default="only", description="A single literal (const).")
    colour: Colour = pydantic.Field(default=Colour.RED, description="An enum class.")
    replicas: int | str = pydantic.Field(default=1, description="A count or a percentage.")
    surge: int | Annotated[str, pydantic.StringConstraints(pattern=r"^[0-9]+%$")] = pydantic.Field(
        default="25%", description="Int or a constrained string."
    )
    ratio: float | None = pydantic.Field(default=None, gt=0, lt=1, description="Strictly between 0 and 1.")
    weight: float = pydantic.Field(default=1.0, ge=0, le=10, description="Inclusive bounds.")
    score: int | float = pydantic.Field(default=0, description="A numeric union.")
    rate: Annotated[int, pydantic.Field(ge=1)] | Annotated[float, pydantic.Field(ge=1)] = pydantic.Field(
        default=1, description="A numeric union with the same bound on each branch."
    )
    labels: dict[str, str] = pydantic.Field(default_factory=dict, max_length=16, description="Typed map.")
    params: dict[str, Any] = pydantic.Field(default_factory=dict, description="Free-form map.")
    anything: Any = pydantic.Field(default=None, description="Any value at all.")
    choices: list[int | float | str | bool] = pydantic.Field(
        default_factory=list, description="Mixed scalars."
    )
    tags: set[str] = pydantic.Field(default_factory=set, max_length=4, description="Unique strings.")
    pair: tuple[int, int] = pydantic.Field(default=(1, 2), description="Exactly two ints.")
    limits: dict[Literal["cpu", "memory"], str] = pydantic.Field(
        default_factory=dict, description="Known keys."
    )
    uri: common.StorageUri = pydantic.Field(description="Where it lives.")  # type: ignore[valid-type]
    code: str = pydantic.Field(
        default="ab", min_length=2, max_length=4, pattern=r"^[a-z]+$", description="A code."
    )
    old_field: str | None = pydantic.Field(default=None, deprecated=True, description="Use mode instead.")
    when: pydantic.AwareDatetime | None = pydantic.Field(default=None, description="A timestamp.")


class GadgetStatus(common.StatusBase):
    """How the gadget is."""

    built: int = pydantic.Field(default=0, ge=0, description="Parts built.")


ROOT_RULE: dict[str, pydantic.JsonValue] = {
    "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase != 'Running'"
    " || self.spec.mode == oldSelf.spec.mode",
    "message": "spec.mode cannot change while the gadget runs",
    "fieldPath": ".spec.mode",
}


class Gadget(common.Resource):
    """A throwaway kind for the generator's tests."""

    model_config = pydantic.ConfigDict(json_schema_extra={"x-kubernetes-validations": [ROOT_RULE]})
    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="Gadget",
        plural="gadgets",
        singular="gadget",
        short_names=("gd",),
        printer_columns=(
            common.PrinterColumn(name="Phase", json_path=".status.phase"),
            common.PrinterColumn(name="Built", json_path=".status.built", type="integer", priority=1),
            common.PrinterColumn(
                name="Ready", json_path='.status.conditions[?(@.type=="Ready")].status', description="Ready?"
            ),
        ),
        description="Gadgets, for tests.",
    )
    spec: GadgetSpec
    status: GadgetStatus = GadgetStatus()


@pytest.fixture(scope="module")
def gadget() -> dict[str, Any]:
    built: dict[str, Any] = crd.build(Gadget)
    return built


@pytest.fixture(scope="module")
def spec(gadget: dict[str, Any]) -> dict[str, Any]:
    node = gadget["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props: dict[str, Any] = node["properties"]
    return props


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every mapping inside ``node``."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_walk(value))
    return out


# ---------------------------------------------------------------------------------------------
# The committed files
# ---------------------------------------------------------------------------------------------
def test_committed_crds_match_the_models() -> None:
    files = crd.render_all(crd.discover())
    for out_dir in OUT_DIRS:
        diffs = cli.differences(out_dir, files)
        assert not diffs, "generated CRDs are out of date, run `make crds`:\n" + "".join(diffs)


def test_chart_copy_is_identical() -> None:
    names = sorted(p.name for p in OUT_DIRS[0].glob("mlops.dev_*.yaml"))
    assert names == sorted(p.name for p in OUT_DIRS[1].glob("mlops.dev_*.yaml"))
    for name in names:
        assert (OUT_DIRS[0] / name).read_bytes() == (OUT_DIRS[1] / name).read_bytes()


def test_real_kinds_are_structural_and_complete() -> None:
    for resource in crd.discover():
        built = crd.build(resource)
        version = built["spec"]["versions"][0]
        root = version["schema"]["openAPIV3Schema"]
        assert checks.structural_problems(root, path=resource.crd.kind) == []
        assert root["required"] == ["spec"]
        assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
        assert version["subresources"] == {"status": {}}
        assert built["spec"]["names"]["categories"] == ["mlops"]
        assert crd.file_name(resource) == f"mlops.dev_{resource.crd.plural}.yaml"


def test_every_field_of_the_real_kinds_is_described() -> None:
    # `kubectl explain` is the API's documentation: every field carries its description.
    missing = [field for resource in crd.discover() for field in crd.undescribed_fields(resource)]
    assert not missing, f"fields without a description (add a docstring or Field(description=...)): {missing}"


def test_undescribed_fields_are_found() -> None:
    assert crd.undescribed_fields(Gadget) == []
    assert crd.undescribed_fields(_resource(Plain)) == ["Broken.spec", "Broken.spec.count"]


# ---------------------------------------------------------------------------------------------
# The CRD around the schema
# ---------------------------------------------------------------------------------------------
def test_crd_top_level(gadget: dict[str, Any]) -> None:
    assert gadget["apiVersion"] == "apiextensions.k8s.io/v1"
    assert gadget["kind"] == "CustomResourceDefinition"
    assert gadget["metadata"]["name"] == "gadgets.mlops.dev"
    spec = gadget["spec"]
    assert spec["group"] == "mlops.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "Gadget",
        "listKind": "GadgetList",
        "plural": "gadgets",
        "singular": "gadget",
        "shortNames": ["gd"],
        "categories": ["mlops"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert version["additionalPrinterColumns"] == [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Built", "type": "integer", "jsonPath": ".status.built", "priority": 1},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "description": "Ready?",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    root = version["schema"]["openAPIV3Schema"]
    assert root["description"] == "Gadgets, for tests."
    assert root["required"] == ["spec"]
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["properties"]["apiVersion"]["type"] == "string"
    assert root["properties"]["kind"]["type"] == "string"
    assert root["properties"]["spec"]["description"] == "What a gadget should be."
    assert root["properties"]["spec"]["required"] == ["mainPart", "uri"]
    assert root["properties"]["status"]["description"] == "How the gadget is."
    assert root["x-kubernetes-validations"] == [dict(sorted(ROOT_RULE.items()))]


def test_schema_has_no_json_schema_leftovers(gadget: dict[str, Any]) -> None:
    root = gadget["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert checks.structural_problems(root, path="Gadget") == []
    for node in _walk(root):
        for key in (
            "$ref",
            "$defs",
            "title",
            "const",
            "uniqueItems",
            "prefixItems",
            "oneOf",
            "allOf",
            "examples",
        ):
            assert key not in node, (key, node)
        assert node.get("additionalProperties") is not False
        assert "default" not in node or node["default"] is not None


# ---------------------------------------------------------------------------------------------
# Each schema feature
# ---------------------------------------------------------------------------------------------
def test_refs_inlined_and_descriptions_kept(spec: dict[str, Any]) -> None:
    main = spec["mainPart"]
    assert main["type"] == "object"
    assert main["description"] == "The main part (field description wins over the docstring)."
    assert main["required"] == ["name"]
    assert main["properties"]["name"] == {
        "description": "Name of the part.",
        "maxLength": 63,
        "minLength": 1,
        "type": "string",
    }
    # A model used without a field description keeps its docstring.
    assert spec["parts"]["items"]["description"] == "A part of a gadget."


def test_optional_collapses_and_cel_rules_merge(spec: dict[str, Any]) -> None:
    spare = spec["sparePart"]
    assert spare["type"] == "object"
    assert "anyOf" not in spare and "nullable" not in spare and "default" not in spare
    # The model's rule first, then the field's.
    assert spare["x-kubernetes-validations"] == [
        {
            "fieldPath": ".low",
            "message": "part.low must not exceed part.high",
            "rule": "self.low <= self.high",
        },
        {"rule": "self.name != 'forbidden'"},
    ]
    assert spec["ratio"]["type"] == "number"


def test_literals_and_enums(spec: dict[str, Any]) -> None:
    assert spec["mode"] == {
        "default": "fast",
        "description": "How fast.",
        "enum": ["fast", "slow"],
        "type": "string",
    }
    assert spec["fixed"]["enum"] == ["only"] and spec["fixed"]["type"] == "string"
    assert spec["colour"]["enum"] == ["red", "blue"] and spec["colour"]["default"] == "red"


def test_int_or_string(spec: dict[str, Any]) -> None:
    assert spec["replicas"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "default": 1,
        "description": "A count or a percentage.",
        "x-kubernetes-int-or-string": True,
    }
    # Branch constraints move up, where OpenAPI applies them to strings only.
    assert spec["surge"]["pattern"] == "^[0-9]+%$"
    assert spec["surge"]["x-kubernetes-int-or-string"] is True
    assert spec["surge"]["default"] == "25%"
    assert "type" not in spec["surge"]


def test_numeric_union_and_bounds(spec: dict[str, Any]) -> None:
    assert spec["score"]["type"] == "number"
    assert spec["rate"] == {
        "default": 1,
        "description": "A numeric union with the same bound on each branch.",
        "minimum": 1,
        "type": "number",
    }
    assert spec["ratio"] == {
        "description": "Strictly between 0 and 1.",
        "exclusiveMaximum": True,
        "exclusiveMinimum": True,
        "maximum": 1,
        "minimum": 0,
        "type": "number",
    }
    assert (spec["weight"]["minimum"], spec["weight"]["maximum"]) == (0, 10)
    assert "exclusiveMinimum" not in spec["weight"]


def test_maps(spec: dict[str, Any]) -> None:
    assert spec["labels"] == {
        "additionalProperties": {"type": "string"},
        "description": "Typed map.",
        "maxProperties": 16,
        "type": "object",
    }
    assert spec["params"] == {
        "description": "Free-form map.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    limits = spec["limits"]
    assert limits["additionalProperties"] == {"type": "string"}
    assert limits["x-kubernetes-validations"] == [
        {"message": 'keys must be one of: "cpu", "memory"', "rule": 'self.all(k, k in ["cpu", "memory"])'}
    ]


def test_untyped_values_preserve_unknown_fields(spec: dict[str, Any]) -> None:
    assert spec["anything"] == {
        "description": "Any value at all.",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert spec["choices"]["items"] == {"x-kubernetes-preserve-unknown-fields": True}


def test_lists(spec: dict[str, Any]) -> None:
    assert spec["tags"] == {
        "description": "Unique strings.",
        "items": {"type": "string"},
        "maxItems": 4,
        "type": "array",
        "x-kubernetes-list-type": "set",
    }
    assert spec["pair"] == {
        "description": "Exactly two ints.",
        "items": {"type": "integer"},
        "maxItems": 2,
        "minItems": 2,
        "type": "array",
    }
    parts = spec["parts"]
    assert parts["x-kubernetes-list-type"] == "map"
    assert parts["x-kubernetes-list-map-keys"] == ["name"]
    assert parts["maxItems"] == 8


def test_strings_formats_and_deprecation(spec: dict[str, Any]) -> None:
    assert spec["code"] == {
        "default": "ab",
        "description": "A code.",
        "maxLength": 4,
        "minLength": 2,
        "pattern": "^[a-z]+$",
        "type": "string",
    }
    assert spec["uri"]["pattern"] == common.STORAGE_URI_PATTERN
    assert spec["when"] == {"description": "A timestamp.", "format": "date-time", "type": "string"}
    assert spec["oldField"]["description"] == "Deprecated. Use mode instead."


def test_status_schema(gadget: dict[str, Any]) -> None:
    status = gadget["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "default" not in status  # object defaults are not copied
    assert status["properties"]["built"] == {
        "default": 0,
        "description": "Parts built.",
        "minimum": 0,
        "type": "integer",
    }
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["items"]["required"] == ["status", "type"]


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def test_render_is_stable_yaml(gadget: dict[str, Any]) -> None:
    text = crd.render(gadget)
    assert text.startswith("# Code generated by mlops_operator.crdgen. DO NOT EDIT.\n---\n")
    assert text == crd.render(crd.build(Gadget))
    assert "&id" not in text and "*id" not in text  # no anchors although Part appears three times
    assert yaml.safe_load(text) == gadget
    lines = text.splitlines()
    assert lines.index("apiVersion: apiextensions.k8s.io/v1") < lines.index("kind: CustomResourceDefinition")


def test_words_go_yaml_reads_as_booleans_are_quoted() -> None:
    # kubectl parses YAML 1.1 with go-yaml v2: a bare n or y is a boolean there.
    text = crd.render({"required": ["n", "t", "y"], "properties": {"N": {}, "Y": {}, "on": {}}})
    assert text.endswith("required:\n- 'n'\n- t\n- 'y'\nproperties:\n  'N': {}\n  'Y': {}\n  'on': {}\n")


def test_multiline_descriptions_are_literal_blocks() -> None:
    text = crd.render({"description": "line one\nline two"})
    assert "description: |-\n  line one\n  line two\n" in text


# ---------------------------------------------------------------------------------------------
# Models the generator must refuse, naming the field
# ---------------------------------------------------------------------------------------------
def _resource(spec_model: type[common.ApiModel], **meta: Any) -> type[common.Resource]:
    fields: dict[str, Any] = {"spec": (spec_model, ...), "status": (common.StatusBase, common.StatusBase())}
    model = pydantic.create_model("Broken", __base__=common.Resource, **fields)
    model.crd = common.CRDMeta(
        kind="Broken",
        plural="brokens",
        singular="broken",
        short_names=(),
        printer_columns=meta.get("columns", ()),
        description="",
    )
    return model


class Node(common.ApiModel):
    children: list[Node] = pydantic.Field(default_factory=list)


class UniqueObjects(common.ApiModel):
    parts: set[tuple[int, int]] = pydantic.Field(default_factory=set)


class BadDefault(common.ApiModel):
    count: int = pydantic.Field(default=-1, ge=0)


class BadFieldPath(common.ApiModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{"rule": "true", "fieldPath": ".nope"}]}
    )
    count: int = 0


class BadListMap(common.ApiModel):
    parts: list[Part] = pydantic.Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["colour"]},
    )


class Plain(common.ApiModel):
    count: int = 0


class HiddenFromCel(common.ApiModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "size(self.values) > 0 && size(self.values) < 9"}]
        }
    )
    values: list[int | str | bool] = pydantic.Field(default_factory=list, max_length=8)


@pytest.mark.parametrize(
    ("model", "columns", "message"),
    [
        (Node, (), "recursive model"),
        (UniqueObjects, (), "spec.parts: unique items must be scalars"),
        (BadDefault, (), "spec.count: default -1 is invalid: below the minimum 0"),
        (BadFieldPath, (), "CEL fieldPath '.nope' names no field"),
        (BadListMap, (), "list-map key 'colour' is not a property"),
        (HiddenFromCel, (), "reads self.values, a field CEL cannot see"),
        (Plain, (common.PrinterColumn(name="X", json_path=".status.missing"),), "printer column 'X'"),
    ],
)
def test_refuses_what_it_cannot_render(model: type[common.ApiModel], columns: Any, message: str) -> None:
    with pytest.raises(schema_mod.CRDGenError, match=message.replace("(", r"\(").replace(".", r"\.")):
        crd.build(_resource(model, columns=columns))


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        ({"properties": {"a": {}}, "type": "object"}, "Bad.a: no type"),
        ({"type": "array"}, "an array needs items"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems' is not allowed"),
        ({"anyOf": [{"type": "string"}, {"type": "number"}]}, "anyOf is only allowed"),
        ({"type": "object", "additionalProperties": False}, "additionalProperties must be a schema"),
        ({"type": "string", "title": "X"}, "'title' is not allowed"),
        ({"$ref": "#/x"}, "'$ref' is not allowed"),
        ({"type": "string", "enum": ["a"], "default": "b"}, "not one of"),
        ({"type": "object", "x-kubernetes-validations": [{"rule": "x", "reason": "Nope"}]}, "CEL reason"),
        ({"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "set"}, "set needs scalar"),
    ],
)
def test_structural_checker_flags(node: dict[str, Any], problem: str) -> None:
    problems = checks.structural_problems(node, path="Bad")
    assert any(problem in p for p in problems), problems


def test_resolve_paths(spec: dict[str, Any], gadget: dict[str, Any]) -> None:
    root = gadget["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert checks.resolve(root, ".spec.mainPart.low") == spec["mainPart"]["properties"]["low"]
    assert checks.resolve(root, ".spec.labels['app']") == {"type": "string"}
    assert checks.resolve(root, ".spec.parts[0].name") == spec["parts"]["items"]["properties"]["name"]
    assert checks.resolve(root, ".spec.params.anything.deep") == spec["params"]
    assert checks.resolve(root, ".spec.nothing") is None
    assert checks.resolve(root, ".spec.mode[0]") is None


# ---------------------------------------------------------------------------------------------
# The command line: write, check, stale files
# ---------------------------------------------------------------------------------------------
def test_cli_writes_then_checks(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, chart = tmp_path / "crds", tmp_path / "chart"
    args = ["--out", str(out), "--chart-out", str(chart), "--module", __name__]
    assert cli.main(args) == 0
    written = out / "mlops.dev_gadgets.yaml"
    assert written.read_text() == crd.render(crd.build(Gadget))
    assert (chart / "mlops.dev_gadgets.yaml").read_bytes() == written.read_bytes()
    assert cli.main([*args, "--check"]) == 0

    written.write_text(written.read_text().replace("maxLength: 63", "maxLength: 64"))
    capsys.readouterr()
    assert cli.main([*args, "--check"]) == 1
    diff = capsys.readouterr().out
    assert "-                      maxLength: 64" in diff and "+                      maxLength: 63" in diff

    assert cli.main(args) == 0  # repairs
    (chart / "mlops.dev_stale.yaml").write_text("old")
    (chart / "unrelated.yaml").write_text("kept")
    assert cli.main([*args, "--check"]) == 1
    assert cli.main(args) == 0
    assert not (chart / "mlops.dev_stale.yaml").exists()
    assert (chart / "unrelated.yaml").exists()
    assert cli.main([*args, "--check"]) == 0

    written.unlink()
    assert cli.main([*args, "--check"]) == 1


def test_cli_skips_kind_modules_that_do_not_exist_yet(tmp_path: pathlib.Path) -> None:
    assert cli.main(["--out", str(tmp_path), "--module", "mlops_operator.api.not_written_yet"]) == 0
    assert not list(tmp_path.iterdir())


def test_cli_fails_on_a_model_it_cannot_render(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "crdgen_broken_kind.py").write_text(
        "from typing import ClassVar\n"
        "import pydantic\n"
        "from mlops_operator.api import common\n"
        "class Spec(common.ApiModel):\n"
        "    count: int = pydantic.Field(default=-1, ge=0)\n"
        "class Broken(common.Resource):\n"
        "    crd: ClassVar[common.CRDMeta] = common.CRDMeta(kind='Broken', plural='brokens',\n"
        "        singular='broken', short_names=(), printer_columns=(), description='')\n"
        "    spec: Spec\n"
        "    status: common.StatusBase = common.StatusBase()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["--out", str(tmp_path / "out"), "--module", "crdgen_broken_kind"]) == 2
    assert "Broken.spec.count: default -1 is invalid" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_discover_finds_only_own_kinds() -> None:
    found = crd.discover([__name__])
    assert found == [Gadget]


# ---------------------------------------------------------------------------------------------
# The invalid-resource corpus used by tests/integration/test_admission.py
# ---------------------------------------------------------------------------------------------
def _invalid_files() -> list[pathlib.Path]:
    return sorted(INVALID_DIR.glob("*.yaml"))


def test_invalid_corpus_is_well_formed() -> None:
    files = _invalid_files()
    assert len(files) >= 20
    kinds = {"Dataset", "TrainingJob", "HyperparameterSweep", "ModelDeployment", "Model"}
    for path in files:
        text = path.read_text()
        expects = [
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# expect:")
        ]
        assert expects and all(expects), f"{path.name}: needs a '# expect: <substring>' line"
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        assert len(docs) == 1, f"{path.name}: exactly one resource per file"
        (doc,) = docs
        assert doc["apiVersion"] == "mlops.dev/v1alpha1", path.name
        assert doc["kind"] in kinds, path.name
        assert doc["metadata"]["name"], path.name


def test_update_corpus_is_well_formed() -> None:
    files = sorted((INVALID_DIR / "updates").glob("*.yaml"))
    assert files
    for path in files:
        text = path.read_text()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        assert len(docs) == 2, f"{path.name}: the resource, then the update"
        assert docs[0]["kind"] == docs[1]["kind"] and docs[0]["metadata"] == docs[1]["metadata"], path.name
        assert docs[0]["spec"] != docs[1]["spec"], path.name
        accepted = "# expect-accepted" in text
        expects = [line for line in text.splitlines() if line.startswith("# expect:")]
        assert accepted != bool(expects), f"{path.name}: '# expect: <substring>' lines or '# expect-accepted'"


# -- value-validation anyOf (what CEL cannot see) ---------------------------------------------


class _Choice(common.ApiModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra={
            common.VALUE_ANY_OF: [
                {"required": ["values"], "properties": {"kind": {"enum": ["pick"]}}},
                {"properties": {"kind": {"enum": ["range"]}}},
            ]
        }
    )

    kind: Literal["pick", "range"] = pydantic.Field(description="Kind.")
    values: list[Any] | None = pydantic.Field(default=None, description="Untyped choices.")


def test_value_any_of_becomes_a_structural_any_of() -> None:
    node = schema_mod.to_structural(_Choice.model_json_schema(), defs={}, path="choice")
    assert node["anyOf"] == [
        {"required": ["values"], "properties": {"kind": {"enum": ["pick"]}}},
        {"properties": {"kind": {"enum": ["range"]}}},
    ]
    assert common.VALUE_ANY_OF not in node
    assert checks.structural_problems(node, path="choice") == []


@pytest.mark.parametrize(
    "branch",
    [
        {"required": ["nosuchfield"]},
        {"properties": {"kind": {"type": "string"}}},
        {"type": "object"},
    ],
)
def test_value_any_of_that_is_not_structural_is_refused(branch: dict[str, Any]) -> None:
    raw = _Choice.model_json_schema()
    raw[common.VALUE_ANY_OF] = [branch]
    with pytest.raises(schema_mod.CRDGenError, match="value-validation anyOf"):
        schema_mod.to_structural(raw, defs={}, path="choice")
    node = {"type": "object", "properties": {"kind": {"type": "string"}}, "anyOf": [branch]}
    assert any("anyOf" in p for p in checks.structural_problems(node, path="choice"))
