"""The citable artifact: CITATION.cff against the CFF 1.2.0 schema, the bibliography, the
Zenodo metadata, the GitHub workflow and the licences."""

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_is_valid_cff_1_2_0():
    # tests/data/cff-schema-1.2.0.json is the published schema
    # (https://citation-file-format.github.io/1.2.0/schema.json), as shipped in cffconvert 2.0.0.
    schema = json.loads((ROOT / "tests" / "data" / "cff-schema-1.2.0.json").read_text())
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    jsonschema.validate(cff, schema, format_checker=jsonschema.FormatChecker())
    assert cff["cff-version"] == "1.2.0"
    pref = cff["preferred-citation"]
    assert "2311.15487" in pref["url"] and pref["authors"][0]["family-names"] == "Chen"


def test_citation_cff_schema_rejects_a_broken_file():
    schema = json.loads((ROOT / "tests" / "data" / "cff-schema-1.2.0.json").read_text())
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    del cff["authors"]
    validator = jsonschema.Draft7Validator(schema)
    assert list(validator.iter_errors(cff)), "the schema check would pass anything"


def test_bibliography_parses_with_the_paper_and_its_14_references():
    from pybtex.database import parse_file

    bib = parse_file(str(ROOT / "references.bib"))
    assert "chen2023adapted" in bib.entries
    assert len(bib.entries) == 15
    for key, entry in bib.entries.items():
        assert "title" in entry.fields and "year" in entry.fields, key


def test_zenodo_metadata():
    z = json.loads((ROOT / ".zenodo.json").read_text())
    assert z["upload_type"] == "software" and z["creators"] and z["license"]
    assert any("2311.15487" in r["identifier"] for r in z["related_identifiers"])


def test_github_pages_workflow():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    steps = wf["jobs"]["build"]["steps"]
    runs = [s.get("run", "") for s in steps]
    uses = [s.get("uses", "") for s in steps]
    build = next(i for i, r in enumerate(runs) if "make book-full" in r)
    # pushes to main publish the publication-parameter book, pull requests build the fast one
    assert "make book-full" in runs[build] and "make book\n" in runs[build] and "BOOK_MODE" in runs[build]
    assert "refs/heads/main" in wf["jobs"]["build"]["env"]["BOOK_MODE"]
    assert "make test" in runs and runs.index("make test") < build
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/cache") for u in uses)
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in wf["jobs"]["deploy"]["steps"])


def test_licences_present():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "CC-BY-4.0" in (ROOT / "LICENSE-text").read_text()
