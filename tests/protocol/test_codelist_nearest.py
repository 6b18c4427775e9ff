"""`CodeList.nearest`: the codes a mistyped value most likely meant, for the node's import
problems and the catalogue's search errors alike."""

from __future__ import annotations

from protocol.codelists import CodeList, CodeLists

TOY = CodeList.from_json(
    {
        "name": "toy",
        "version": "1",
        "codes": [
            {"code": "Blood", "en": "Blood", "zh": "血液"},
            {"code": "WholeBlood", "en": "Whole blood", "zh": "全血", "parent": "Blood"},
            {"code": "Plasma", "en": "Plasma", "zh": "血浆", "parent": "Blood"},
            {"code": "TissueFFPE", "en": "Tissue, paraffin (FFPE)", "zh": "石蜡组织"},
            {"code": "TissueFrozen", "en": "Tissue, frozen", "zh": "冰冻组织"},
            {"code": "FetalTissue", "en": "Fetal tissue", "zh": "胎儿组织"},
        ],
    }
)


def test_a_code_or_label_but_for_case_and_spacing_is_the_one_answer() -> None:
    assert TOY.nearest("blood") == ["Blood"]
    assert TOY.nearest("  whole   BLOOD ") == ["WholeBlood"]
    assert TOY.nearest("血浆") == ["Plasma"]


def test_codes_containing_it_come_first_where_it_comes_earliest() -> None:
    assert TOY.nearest("ffpe") == ["TissueFFPE"]
    assert TOY.nearest("tissue")[:2] == ["TissueFFPE", "TissueFrozen"]
    assert TOY.nearest("tissue")[2] == "FetalTissue"
    assert sorted(TOY.nearest("组织", n=5)) == ["FetalTissue", "TissueFFPE", "TissueFrozen"]


def test_close_spellings_then_nothing() -> None:
    assert TOY.nearest("Blod")[0] == "Blood"
    assert TOY.nearest("Plazma") == ["Plasma"]
    assert TOY.nearest("zzzz") == []
    assert TOY.nearest("") == [] and TOY.nearest("   ") == []
    assert TOY.nearest("ti") == []  # two letters are in too many names to mean one
    assert len(TOY.nearest("tissue", n=1)) == 1


def test_the_shipped_lists_answer_what_researchers_and_exports_type() -> None:
    lists = CodeLists.default()
    assert lists.get("sample-type").nearest("serum") == ["Serum"]
    assert lists.get("sample-type").nearest("Serun")[0] == "Serum"
    assert lists.get("country").nearest("德国") == ["DE"]
    assert lists.get("sex").nearest("FEMALE") == ["female"]
    duo = lists.get("duo")  # researchers know the consent codes by their shorthand
    assert duo.nearest("GRU") == ["DUO:0000042"] and duo.nearest("hmb") == ["DUO:0000006"]
