"""Seeded generator of realistic, entirely synthetic biobank LIMS exports for one country.

``generate(country, n_samples, seed, out_dir)`` writes, in the local flavour of the country
(column headers, material names, codes, date format, CSV dialect):

* ``samples.csv``: one row per sample, donors with several samples each, streamed so memory
  stays constant (10 million rows are fine);
* ``mapping.toml``: the node importer's mapping from those local columns and codes to the
  shared code lists;
* ``biobanks.csv`` / ``collections.csv``: the biobank and collection export in the node's
  CSV shape (one row per record, our field names, ``|`` between list items).

Everything is synthetic: names are plausible fictions, e-mails use ``.example`` domains.
The same ``(country, n_samples, seed)`` always gives byte-identical files.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

# ---------------------------------------------------------------------------------------
# Cohort themes: sample-type mix, age distribution and diagnosis mix of a collection type.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Theme:
    """A kind of collection: which samples it holds and which diagnoses its donors have."""

    name: str
    sample_types: tuple[str, ...]
    sample_type_weights: tuple[int, ...]
    age_mean: float
    age_sd: float
    # (ICD-10 codes, ORPHA codes, forced sex or None, weight)
    diagnoses: tuple[tuple[tuple[str, ...], tuple[str, ...], str | None, int], ...]
    dataset_types: tuple[str, ...]
    design: tuple[str, ...]
    setting: tuple[str, ...]
    comorbidity_rate: float = 0.15

    def pick_diagnosis(self, rng: random.Random) -> tuple[list[str], list[str], str | None]:
        """One donor's ICD-10 codes, ORPHA codes and (for sex-specific diseases) sex."""
        icd, orpha, sex, _ = rng.choices(self.diagnoses, self._weights)[0]
        codes = list(icd)
        if rng.random() < self.comorbidity_rate:
            extra = rng.choice(COMORBIDITIES)
            if extra not in codes:
                codes.append(extra)
        return codes, list(orpha), sex

    @property
    def _weights(self) -> tuple[int, ...]:
        return tuple(d[3] for d in self.diagnoses)

    def collection_icd10(self) -> list[str]:
        return sorted({c for d in self.diagnoses for c in d[0]})

    def orpha_codes(self) -> list[str]:
        return sorted({c for d in self.diagnoses for c in d[1]})


COMORBIDITIES = ("I10", "E11.9", "E78.0", "J45.9", "E66.9", "N18.3", "F32.9", "K21.9")

THEMES: dict[str, Theme] = {t.name: t for t in (
    Theme("cancer",
          ("TissueFreshFrozen", "TissueFFPE", "Plasma", "Serum", "WholeBlood", "DNA", "BuffyCoat",
           "RNA"),
          (22, 18, 16, 12, 10, 10, 8, 4), 62, 12,
          ((("C50.9",), (), "female", 22), (("C18.9",), (), None, 12), (("C34.1",), (), None, 11),
           (("C61",), (), "male", 12), (("C43.9",), (), None, 6), (("C25.9",), (), None, 4),
           (("C56",), (), "female", 4), (("C64",), (), None, 4), (("C67.9",), (), None, 4),
           (("C71.9",), (), None, 3), (("C92.0",), (), None, 3), (("C20",), (), None, 5),
           (("C16.9",), (), None, 4), (("C22.0",), (), None, 3), (("D05.1",), (), "female", 3)),
          ("Genomic", "Clinical", "WholeSlideImage", "Proteomic"),
          ("DiseaseSpecificCohort", "CaseControl"), ("RoutineHealthCare",)),
    Theme("cardiovascular",
          ("Plasma", "Serum", "WholeBlood", "DNA", "BuffyCoat", "Urine"),
          (30, 25, 15, 15, 8, 7), 66, 11,
          ((("I10",), (), None, 20), (("I21.9",), (), None, 15), (("I25.1",), (), None, 18),
           (("I48.9",), (), None, 14), (("I50.9",), (), None, 12), (("I63.9",), (), None, 10),
           (("I11.9",), (), None, 6), (("I35.0",), (), None, 5)),
          ("Clinical", "Biochemical", "Physiological", "Genomic", "BodyImage"),
          ("LongitudinalCohort", "DiseaseSpecificCohort"), ("RoutineHealthCare", "ClinicalTrial")),
    Theme("diabetes",
          ("Serum", "Plasma", "Urine", "WholeBlood", "DNA"),
          (28, 28, 22, 12, 10), 58, 13,
          ((("E11.9",), (), None, 45), (("E10.9",), (), None, 15), (("E11.6",), (), None, 10),
           (("E11.2", "N08.3"), (), None, 8), (("E66.9", "E11.9"), (), None, 12),
           (("E78.0",), (), None, 10)),
          ("Clinical", "Biochemical", "Metabolomic", "Lifestyle", "Genomic"),
          ("LongitudinalCohort", "DiseaseSpecificCohort"), ("RoutineHealthCare", "ResearchStudy")),
    Theme("population",
          ("WholeBlood", "Serum", "Plasma", "Urine", "Saliva", "DNA", "BuffyCoat", "Faeces"),
          (18, 18, 18, 14, 8, 12, 8, 4), 48, 16,
          (((), (), None, 55), (("I10",), (), None, 12), (("E11.9",), (), None, 7),
           (("J45.9",), (), None, 8), (("E78.0",), (), None, 6), (("F32.9",), (), None, 5),
           (("M81.0",), (), "female", 4), (("K58.9",), (), None, 3)),
          ("Lifestyle", "Clinical", "Genomic", "Biochemical", "Environmental", "Psychological"),
          ("PopulationBasedCohort", "LongitudinalCohort"), ("ResearchStudy",), 0.05),
    Theme("neuro",
          ("CerebrospinalFluid", "Plasma", "Serum", "DNA", "WholeBlood", "RNA"),
          (25, 22, 18, 15, 12, 8), 68, 10,
          ((("G30.9",), (), None, 30), (("G20",), (), None, 25), (("G35",), (), None, 15),
           (("F03",), (), None, 10), (("G40.9",), (), None, 10),
           (("G12.2",), ("ORPHA:803",), None, 5), (("G10",), ("ORPHA:399",), None, 5)),
          ("Clinical", "BodyImage", "Genomic", "Proteomic", "Psychological"),
          ("DiseaseSpecificCohort", "LongitudinalCohort"), ("RoutineHealthCare",)),
    Theme("rare",
          ("DNA", "WholeBlood", "RNA", "Plasma", "PBMC", "Fibroblast"),
          (35, 25, 12, 12, 8, 8), 34, 15,
          ((("E84.9",), ("ORPHA:586",), None, 20), (("Q87.4",), ("ORPHA:558",), None, 12),
           (("G71.0",), ("ORPHA:98896",), "male", 12), (("E75.2",), ("ORPHA:355",), None, 8),
           (("E75.2",), ("ORPHA:324",), None, 8), (("F84.2",), ("ORPHA:778",), "female", 6),
           (("H35.5",), ("ORPHA:791",), None, 10), (("D66",), ("ORPHA:98878",), "male", 10),
           (("Q61.2",), ("ORPHA:730",), None, 8), (("G11.1",), ("ORPHA:95",), None, 6)),
          ("Genomic", "Clinical", "GenealogicalRecords", "PhotoImage"),
          ("RareDiseaseCollection", "CaseControl"), ("RoutineHealthCare", "ResearchStudy"), 0.05),
)}

# DUO use conditions per theme: each collection takes one of these sets.
DUO_SETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "cancer": (("DUO:0000006", "DUO:0000019"), ("DUO:0000007", "DUO:0000021"),
               ("DUO:0000042",), ("DUO:0000006", "DUO:0000046")),
    "cardiovascular": (("DUO:0000042",), ("DUO:0000006", "DUO:0000020"),
                       ("DUO:0000007", "DUO:0000019")),
    "diabetes": (("DUO:0000006",), ("DUO:0000042", "DUO:0000046"),
                 ("DUO:0000007", "DUO:0000021")),
    "population": (("DUO:0000042",), ("DUO:0000042", "DUO:0000019"),
                   ("DUO:0000006", "DUO:0000044")),
    "neuro": (("DUO:0000007", "DUO:0000021"), ("DUO:0000006", "DUO:0000026")),
    "rare": (("DUO:0000007", "DUO:0000020"), ("DUO:0000006", "DUO:0000021", "DUO:0000019")),
}

# ---------------------------------------------------------------------------------------
# Country flavours: how a LIMS in that country names its columns and codes.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiobankSpec:
    """A fictional biobank: acronym, name, city, legal entity and web domain."""

    acronym: str
    name: str
    city: str
    juristic_person: str
    domain: str


@dataclass(frozen=True)
class Flavour:
    """The local shape of one country's LIMS export and its node identity."""

    country: str
    origin: str
    node_name: str
    organisation: str
    contact_email: str
    delimiter: str
    date_format: str
    donor_prefix: str
    undotted_icd10: bool
    columns: dict[str, str]
    material_names: dict[str, str]
    temperature_names: dict[str, str]
    sex_names: dict[str, str]
    dataset_type_names: dict[str, str]
    theme_labels: dict[str, str]
    biobank_description: str
    collection_description: str
    biobanks: tuple[BiobankSpec, ...]


ENGLISH_MATERIALS = {
    "WholeBlood": "Whole Blood", "Plasma": "EDTA Plasma", "Serum": "Serum",
    "BuffyCoat": "Buffy Coat", "DNA": "DNA", "RNA": "RNA", "Urine": "Urine", "Saliva": "Saliva",
    "TissueFreshFrozen": "Fresh Frozen Tissue", "TissueFFPE": "FFPE Block",
    "CerebrospinalFluid": "CSF", "Faeces": "Stool", "PBMC": "PBMC", "Fibroblast": "Fibroblasts",
}
ENGLISH_TEMPERATURES = {"RT": "Ambient", "2to10": "Fridge (+4C)", "-18to-35": "-20C Freezer",
                        "-60to-85": "-80C Freezer", "LN": "LN2 Vapour"}
ENGLISH_DATASETS = {d: d for d in (
    "Lifestyle", "Environmental", "Physiological", "Biochemical", "Clinical", "Psychological",
    "Genomic", "Proteomic", "Metabolomic", "BodyImage", "WholeSlideImage", "PhotoImage",
    "GenealogicalRecords")}
ENGLISH_THEMES = {"cancer": "Cancer Biobank", "cardiovascular": "Cardiovascular Cohort",
                  "diabetes": "Diabetes Cohort", "population": "Population Health Study",
                  "neuro": "Neurodegeneration Cohort", "rare": "Rare Disease Registry Biobank"}

FLAVOURS: dict[str, Flavour] = {f.country: f for f in (
    Flavour(
        country="DE", origin="node.biobanken-de-demo.example/biobank-node",
        node_name="Deutscher Biobanken-Knoten (Demo)", organisation="Biobanken-Verbund Deutschland",
        contact_email="knoten@biobanken-de-demo.example", delimiter=";", date_format="%d.%m.%Y",
        donor_prefix="PSN", undotted_icd10=False,
        columns={"local_id": "Proben-ID", "donor_id": "Spender-Pseudonym", "biobank": "Standort",
                 "collection": "Sammlung", "sample_type": "Material",
                 "storage_temperature": "Lagertemperatur", "sex": "Geschlecht",
                 "age": "Alter bei Entnahme", "date": "Entnahmedatum",
                 "diagnoses": "Diagnosen (ICD-10/ORPHA)",
                 "use_conditions": "Nutzungsbedingungen (DUO)",
                 "dataset_types": "Datenarten"},
        material_names={"WholeBlood": "Vollblut", "Plasma": "EDTA-Plasma", "Serum": "Serum",
                        "BuffyCoat": "Buffy Coat", "DNA": "DNA", "RNA": "RNA", "Urine": "Urin",
                        "Saliva": "Speichel", "TissueFreshFrozen": "Gewebe, kryokonserviert",
                        "TissueFFPE": "Gewebe, FFPE", "CerebrospinalFluid": "Liquor",
                        "Faeces": "Stuhl", "PBMC": "PBMC", "Fibroblast": "Fibroblasten"},
        temperature_names={"RT": "Raumtemperatur", "2to10": "+4 °C", "-18to-35": "-20 °C",
                           "-60to-85": "-80 °C", "LN": "Flüssigstickstoff"},
        sex_names={"female": "weiblich", "male": "männlich", "other": "divers",
                   "unknown": "unbekannt"},
        dataset_type_names={**ENGLISH_DATASETS, "Lifestyle": "Lebensstil", "Clinical": "Klinisch",
                            "Genomic": "Genomdaten", "Biochemical": "Biochemie",
                            "Environmental": "Umwelt", "Psychological": "Psychologie",
                            "BodyImage": "Bildgebung", "WholeSlideImage": "Ganzschnittbilder",
                            "GenealogicalRecords": "Stammbaum", "PhotoImage": "Fotodokumentation",
                            "Physiological": "Physiologie", "Proteomic": "Proteomik",
                            "Metabolomic": "Metabolomik"},
        theme_labels={"cancer": "Tumorbank", "cardiovascular": "Herz-Kreislauf-Kohorte",
                      "diabetes": "Diabetes-Kohorte", "population": "Bevölkerungsstudie",
                      "neuro": "Neurodegenerations-Kohorte",
                      "rare": "Biobank Seltene Erkrankungen"},
        biobank_description="{name}: zentrale Biobank für klinische Proben in {city}.",
        collection_description="{label} in {city}: Proben und klinische Daten, ausschließlich "
                               "synthetische Demodaten.",
        biobanks=(
            BiobankSpec("BBMITTE", "Biobank Berlin-Mitte", "Berlin",
                        "Universitätsklinikum Berlin-Mitte", "bb-berlin-mitte.example"),
            BiobankSpec("ZBRN", "Zentralbiobank Rhein-Neckar", "Heidelberg",
                        "Universitätsmedizin Rhein-Neckar", "zb-rhein-neckar.example"),
            BiobankSpec("BBNORD", "Biobank Nord Hamburg", "Hamburg",
                        "Klinikum Hamburg-Nord", "biobank-nord.example"),
        )),
    Flavour(
        country="DK", origin="node.danbiobank-demo.example/biobank-node",
        node_name="Dansk Biobanknode (demo)", organisation="Nationalt Biobanknetværk Danmark",
        contact_email="node@danbiobank-demo.example", delimiter=";", date_format="%d.%m.%Y",
        donor_prefix="D", undotted_icd10=False,
        columns={"local_id": "Prøve-ID", "donor_id": "Donor-ID", "biobank": "Biobank",
                 "collection": "Samling", "sample_type": "Materiale",
                 "storage_temperature": "Opbevaringstemperatur", "sex": "Køn",
                 "age": "Alder ved prøvetagning", "date": "Prøvetagningsdato",
                 "diagnoses": "Diagnoser (ICD-10/ORPHA)", "use_conditions": "Brugsvilkår",
                 "dataset_types": "Datatyper"},
        material_names={"WholeBlood": "Fuldblod", "Plasma": "Plasma", "Serum": "Serum",
                        "BuffyCoat": "Buffy coat", "DNA": "DNA", "RNA": "RNA", "Urine": "Urin",
                        "Saliva": "Spyt", "TissueFreshFrozen": "Væv, frosset",
                        "TissueFFPE": "Væv, FFPE", "CerebrospinalFluid": "Spinalvæske",
                        "Faeces": "Fæces", "PBMC": "PBMC", "Fibroblast": "Fibroblaster"},
        temperature_names={"RT": "Stuetemperatur", "2to10": "2-8 °C", "-18to-35": "-20 °C",
                           "-60to-85": "-80 °C", "LN": "Flydende nitrogen"},
        sex_names={"female": "K", "male": "M", "other": "A", "unknown": "U"},
        dataset_type_names={**ENGLISH_DATASETS, "Lifestyle": "Livsstil", "Clinical": "Klinisk",
                            "Genomic": "Genomisk", "Biochemical": "Biokemisk",
                            "BodyImage": "Billeddiagnostik"},
        theme_labels={"cancer": "Kræftbiobank", "cardiovascular": "Hjertekohorte",
                      "diabetes": "Diabeteskohorte", "population": "Befolkningsundersøgelse",
                      "neuro": "Neurologisk kohorte", "rare": "Sjældne sygdomme"},
        biobank_description="{name}: regional biobank i {city}.",
        collection_description="{label}, {city}: syntetiske demodata.",
        biobanks=(
            BiobankSpec("BBORE", "Biobank Øresund", "København",
                        "Region Hovedstaden (fiktiv)", "biobank-oresund.example"),
            BiobankSpec("JYSK", "Jysk Biobank", "Aarhus", "Region Midtjylland (fiktiv)",
                        "jysk-biobank.example"),
            BiobankSpec("SYDBB", "Regional Biobank Syddanmark", "Odense",
                        "Region Syddanmark (fiktiv)", "biobank-syd.example"),
        )),
    Flavour(
        country="IT", origin="node.biobanche-it-demo.example/biobank-node",
        node_name="Nodo Nazionale Biobanche (demo)", organisation="Rete Italiana Biobanche",
        contact_email="nodo@biobanche-it-demo.example", delimiter=";", date_format="%Y-%m-%d",
        donor_prefix="PAZ", undotted_icd10=True,
        columns={"local_id": "ID Campione", "donor_id": "ID Donatore", "biobank": "Sede",
                 "collection": "Collezione", "sample_type": "Tipo materiale",
                 "storage_temperature": "Temperatura di conservazione", "sex": "Sesso",
                 "age": "Età al prelievo", "date": "Data prelievo",
                 "diagnoses": "Diagnosi (ICD-10/ORPHA)",
                 "use_conditions": "Condizioni d'uso",
                 "dataset_types": "Tipi di dati"},
        material_names={"WholeBlood": "Sangue intero", "Plasma": "Plasma EDTA",
                        "Serum": "Siero", "BuffyCoat": "Buffy coat", "DNA": "DNA", "RNA": "RNA",
                        "Urine": "Urina", "Saliva": "Saliva",
                        "TissueFreshFrozen": "Tessuto congelato", "TissueFFPE": "Tessuto FFPE",
                        "CerebrospinalFluid": "Liquor", "Faeces": "Feci", "PBMC": "PBMC",
                        "Fibroblast": "Fibroblasti"},
        temperature_names={"RT": "Temperatura ambiente", "2to10": "+4 °C", "-18to-35": "-20 °C",
                           "-60to-85": "-80 °C", "LN": "Azoto liquido"},
        sex_names={"female": "F", "male": "M", "other": "A", "unknown": "ND"},
        dataset_type_names={**ENGLISH_DATASETS, "Lifestyle": "Stile di vita",
                            "Clinical": "Clinici", "Genomic": "Genomici",
                            "Biochemical": "Biochimici", "BodyImage": "Imaging",
                            "WholeSlideImage": "Vetrini digitali"},
        theme_labels={"cancer": "Biobanca oncologica", "cardiovascular": "Coorte cardiovascolare",
                      "diabetes": "Coorte diabete", "population": "Studio di popolazione",
                      "neuro": "Coorte neurodegenerativa", "rare": "Biobanca malattie rare"},
        biobank_description="{name}: biobanca di ricerca con sede a {city}.",
        collection_description="{label} ({city}): dati dimostrativi sintetici.",
        biobanks=(
            BiobankSpec("BOMN", "Biobanca Ospedaliera Milano Nord", "Milano",
                        "Azienda Ospedaliera Milano Nord", "biobanca-milanonord.example"),
            BiobankSpec("BRLAZ", "Biobanca Regionale del Lazio", "Roma",
                        "Istituto di Ricerca Clinica del Lazio", "biobanca-lazio.example"),
            BiobankSpec("BOTO", "Biobanca Oncologica di Torino", "Torino",
                        "Fondazione Oncologica Piemontese", "biobanca-torino.example"),
        )),
    Flavour(
        country="IE", origin="node.biobank-ireland-demo.example/biobank-node",
        node_name="Irish Biobank Node (demo)", organisation="Biobank Network Ireland",
        contact_email="node@biobank-ireland-demo.example", delimiter=",", date_format="%Y-%m-%d",
        donor_prefix="PT", undotted_icd10=False,
        columns={"local_id": "Sample ID", "donor_id": "Participant ID", "biobank": "Site",
                 "collection": "Study", "sample_type": "Specimen Type",
                 "storage_temperature": "Storage Temp", "sex": "Gender",
                 "age": "Age at Collection", "date": "Collection Date",
                 "diagnoses": "Diagnosis Codes",
                 "use_conditions": "Consent Codes (DUO)",
                 "dataset_types": "Data Available"},
        material_names=ENGLISH_MATERIALS, temperature_names=ENGLISH_TEMPERATURES,
        sex_names={"female": "F", "male": "M", "other": "O", "unknown": "U"},
        dataset_type_names=ENGLISH_DATASETS, theme_labels=ENGLISH_THEMES,
        biobank_description="{name}: a hospital research biobank in {city}.",
        collection_description="{label}, {city}: synthetic demonstration data.",
        biobanks=(
            BiobankSpec("DCB", "Dublin Clinical Biobank", "Dublin",
                        "Dublin Teaching Hospitals Group", "dublin-biobank.example"),
            BiobankSpec("WHBG", "Western Health Biobank Galway", "Galway",
                        "Western Health Research Institute", "biobank-galway.example"),
            BiobankSpec("MRB", "Munster Research Biobank", "Cork",
                        "Munster Clinical Research Facility", "munster-biobank.example"),
        )),
    Flavour(
        country="CN", origin="node.biobank-cn-demo.example/biobank-node",
        node_name="中国生物样本库节点（演示）", organisation="中国生物样本库联盟（演示）",
        contact_email="node@biobank-cn-demo.example", delimiter=",", date_format="%Y-%m-%d",
        donor_prefix="JZ", undotted_icd10=False,
        columns={"local_id": "样本编号", "donor_id": "捐献者编号", "biobank": "样本库",
                 "collection": "样本集", "sample_type": "样本类型",
                 "storage_temperature": "保存温度", "sex": "性别", "age": "采集年龄",
                 "date": "采集日期", "diagnoses": "诊断编码",
                 "use_conditions": "使用条件", "dataset_types": "数据类型"},
        material_names={"WholeBlood": "全血", "Plasma": "血浆", "Serum": "血清",
                        "BuffyCoat": "白膜层", "DNA": "DNA", "RNA": "RNA", "Urine": "尿液",
                        "Saliva": "唾液", "TissueFreshFrozen": "冷冻组织",
                        "TissueFFPE": "石蜡包埋组织", "CerebrospinalFluid": "脑脊液",
                        "Faeces": "粪便", "PBMC": "外周血单个核细胞", "Fibroblast": "成纤维细胞"},
        temperature_names={"RT": "室温", "2to10": "2~8℃", "-18to-35": "-20℃",
                           "-60to-85": "-80℃", "LN": "液氮"},
        sex_names={"female": "女", "male": "男", "other": "其他", "unknown": "未知"},
        dataset_type_names={**ENGLISH_DATASETS, "Lifestyle": "生活方式", "Clinical": "临床",
                            "Genomic": "基因组", "Biochemical": "生化", "Proteomic": "蛋白质组",
                            "Metabolomic": "代谢组", "BodyImage": "医学影像",
                            "WholeSlideImage": "病理切片图像", "Environmental": "环境",
                            "Psychological": "心理", "Physiological": "生理",
                            "GenealogicalRecords": "家系", "PhotoImage": "照片"},
        theme_labels={"cancer": "肿瘤样本集", "cardiovascular": "心血管队列",
                      "diabetes": "糖尿病队列", "population": "人群队列研究",
                      "neuro": "神经退行性疾病队列", "rare": "罕见病样本集"},
        biobank_description="{name}（{city}）：临床生物样本库。",
        collection_description="{label}（{city}）：合成演示数据。",
        biobanks=(
            BiobankSpec("SHPJ", "上海浦江临床生物样本库", "上海",
                        "上海浦江医学中心（虚构）", "pujiang-biobank.example"),
            BiobankSpec("BJYS", "北京燕山生物样本库", "北京",
                        "北京燕山医院（虚构）", "yanshan-biobank.example"),
            BiobankSpec("GZZJ", "广州珠江医学生物样本库", "广州",
                        "珠江医学研究院（虚构）", "zhujiang-biobank.example"),
        )),
)}


def flavour_for(country: str) -> Flavour:
    """The flavour of ``country`` (ISO alpha-2); an English generic one for any other code."""
    code = country.strip().upper()
    if len(code) != 2 or not code.isalpha():
        raise ValueError(f"country must be an ISO 3166-1 alpha-2 code such as DE, got {country!r}")
    if code in FLAVOURS:
        return FLAVOURS[code]
    low = code.lower()
    base = FLAVOURS["IE"]
    return replace(
        base, country=code, origin=f"node.biobank-{low}-demo.example/biobank-node",
        node_name=f"Biobank Node {code} (demo)", organisation=f"National Biobank Network {code}",
        contact_email=f"node@biobank-{low}-demo.example", delimiter=",", date_format="%Y-%m-%d",
        biobanks=(
            BiobankSpec(f"NB{code}", f"National Biobank {code}", "Capital City",
                        f"National Institute of Health {code}", f"national-biobank-{low}.example"),
            BiobankSpec(f"UH{code}", f"University Hospital Biobank {code}", "University City",
                        f"University Hospital {code}", f"uh-biobank-{low}.example"),
        ))

LIST_SEP = "|"
YEAR_MIN, YEAR_MAX = 1995, 2025
AGE_MIN, AGE_MAX = 18, 95
SAMPLES_PER_DONOR = (1, 2, 3, 4, 5, 6)
SAMPLES_PER_DONOR_WEIGHTS = (30, 30, 20, 10, 6, 4)
SAMPLE_FIELDS = ("local_id", "donor_id", "biobank", "collection", "sample_type",
                 "storage_temperature", "sex", "age", "date", "diagnoses", "use_conditions",
                 "dataset_types")
PROGRESS_EVERY = 10_000
QUALITY_STANDARDS = ("iso-9001", "iso-20387-2018")
CAPABILITIES = ("SampleProcessing", "SampleStorage")

# storage temperatures by sample type, as (codes, weights)
TEMPERATURES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "WholeBlood": (("-60to-85", "-18to-35", "2to10"), (70, 25, 5)),
    "Plasma": (("-60to-85", "LN", "-18to-35"), (80, 12, 8)),
    "Serum": (("-60to-85", "LN", "-18to-35"), (78, 10, 12)),
    "BuffyCoat": (("-60to-85", "LN"), (70, 30)),
    "DNA": (("-18to-35", "-60to-85", "2to10"), (45, 45, 10)),
    "RNA": (("-60to-85", "LN"), (85, 15)),
    "Urine": (("-60to-85", "-18to-35"), (70, 30)),
    "Saliva": (("-60to-85", "-18to-35", "RT"), (60, 30, 10)),
    "TissueFreshFrozen": (("LN", "-60to-85"), (55, 45)),
    "TissueFFPE": (("RT",), (1,)),
    "CerebrospinalFluid": (("-60to-85", "LN"), (80, 20)),
    "Faeces": (("-60to-85", "-18to-35"), (75, 25)),
    "PBMC": (("LN",), (1,)),
    "Fibroblast": (("LN",), (1,)),
}


@dataclass(frozen=True)
class BiobankPlan:
    """One generated biobank."""

    id: str
    acronym: str
    name: str
    city: str
    juristic_person: str
    url: str
    email: str
    description: str
    prefix: str


@dataclass(frozen=True)
class CollectionPlan:
    """One generated collection and the shape of the samples it will receive."""

    id: str
    biobank: str
    site: str
    theme: Theme
    acronym: str
    name: str
    description: str
    first_year: int
    use_conditions: tuple[str, ...]
    dataset_types: tuple[str, ...]
    weight: int


@dataclass
class GeneratedExport:
    """What :func:`generate` wrote, and the counts the demo and tests check against."""

    country: str
    seed: int
    out_dir: Path
    samples_csv: Path
    samples_mapping: Path
    biobanks_csv: Path
    biobanks_mapping: Path
    collections_csv: Path
    collections_mapping: Path
    n_samples: int
    origin: str
    node_name: str
    organisation: str
    contact_email: str
    biobanks: list[BiobankPlan]
    collections: list[CollectionPlan]
    n_donors: int = 0
    samples_per_collection: dict[str, int] = field(default_factory=dict)
    samples_per_biobank: dict[str, int] = field(default_factory=dict)


def plan(country: str, seed: int) -> tuple[Flavour, list[BiobankPlan], list[CollectionPlan]]:
    """Choose the biobanks and collections of a country (deterministic for a seed)."""
    flavour = flavour_for(country)
    rng = random.Random(f"plan:{flavour.country}:{seed}")
    biobanks: list[BiobankPlan] = []
    collections: list[CollectionPlan] = []
    theme_names = sorted(THEMES)
    for i, spec in enumerate(flavour.biobanks):
        bb_id = f"bbmri-eric:ID:{flavour.country}_{spec.acronym.upper()}"
        biobanks.append(BiobankPlan(
            id=bb_id, acronym=spec.acronym, name=spec.name, city=spec.city,
            juristic_person=spec.juristic_person, url=f"https://www.{spec.domain}/",
            email=f"biobank@{spec.domain}",
            description=flavour.biobank_description.format(name=spec.name, city=spec.city),
            prefix=f"{spec.acronym.upper()[:4]}{i + 1}",
        ))
        for theme_name in sorted(rng.sample(theme_names, k=rng.choice((2, 3)))):
            theme = THEMES[theme_name]
            label = flavour.theme_labels[theme_name]
            collections.append(CollectionPlan(
                id=f"{bb_id}:collection:{theme_name.upper()}", biobank=bb_id, site=spec.acronym,
                theme=theme, acronym=f"{spec.acronym}-{theme_name[:4].upper()}",
                name=f"{label} {spec.city}",
                description=flavour.collection_description.format(label=label, city=spec.city),
                first_year=rng.randint(YEAR_MIN, 2015),
                use_conditions=rng.choice(DUO_SETS[theme_name]),
                dataset_types=tuple(sorted(rng.sample(theme.dataset_types,
                                                      k=rng.randint(1, len(theme.dataset_types))))),
                weight=rng.randint(1, 5),
            ))
    return flavour, biobanks, collections


def generate(country: str, n_samples: int, seed: int, out_dir: Path,
             progress: Callable[[int], None] | None = None) -> GeneratedExport:
    """Write a LIMS-like export of ``n_samples`` samples for ``country`` into ``out_dir``.

    ``progress`` is called now and then with the number of sample rows written since the
    last call.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    flavour, biobanks, collections = plan(country, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    export = GeneratedExport(
        country=flavour.country, seed=seed, out_dir=out_dir,
        samples_csv=out_dir / "samples.csv", samples_mapping=out_dir / "samples.mapping.toml",
        biobanks_csv=out_dir / "biobanks.csv", biobanks_mapping=out_dir / "biobanks.mapping.toml",
        collections_csv=out_dir / "collections.csv",
        collections_mapping=out_dir / "collections.mapping.toml",
        n_samples=n_samples, origin=flavour.origin, node_name=flavour.node_name,
        organisation=flavour.organisation, contact_email=flavour.contact_email,
        biobanks=biobanks, collections=collections,
        samples_per_collection={c.id: 0 for c in collections},
        samples_per_biobank={b.id: 0 for b in biobanks},
    )
    _write_samples(export, flavour, random.Random(f"samples:{flavour.country}:{seed}"),
                   progress)
    _write_biobanks(export, flavour)
    _write_collections(export)
    export.samples_mapping.write_text(samples_mapping_toml(flavour, export), encoding="utf-8")
    export.biobanks_mapping.write_text(_identity_mapping("biobank", BIOBANK_COLUMNS, ","),
                                       encoding="utf-8")
    export.collections_mapping.write_text(
        _identity_mapping("collection", COLLECTION_COLUMNS, ","), encoding="utf-8")
    return export


def _date_pattern(fmt: str) -> str:
    return fmt.replace("%d", "{d:02d}").replace("%m", "{m:02d}").replace("%Y", "{y}")


def _write_samples(export: GeneratedExport, flavour: Flavour, rng: random.Random,
                   progress: Callable[[int], None] | None) -> None:
    """Stream donors and their samples to the samples CSV (memory stays constant)."""
    prefixes = {b.id: b.prefix for b in export.biobanks}
    weights = [c.weight for c in export.collections]
    counters = {b.id: 0 for b in export.biobanks}
    pattern = _date_pattern(flavour.date_format)
    written = donors = reported = 0
    with export.samples_csv.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=flavour.delimiter, lineterminator="\n")
        writer.writerow([flavour.columns[k] for k in SAMPLE_FIELDS])
        while written < export.n_samples:
            coll = rng.choices(export.collections, weights=weights)[0]
            donors += 1
            donor_id = f"{flavour.donor_prefix}{donors:07d}"
            n = min(rng.choices(SAMPLES_PER_DONOR, SAMPLES_PER_DONOR_WEIGHTS)[0],
                    export.n_samples - written)
            prefix = prefixes[coll.biobank]
            for row in _donor_rows(rng, flavour, pattern, coll, donor_id, n):
                counters[coll.biobank] += 1
                writer.writerow([f"{prefix}-{counters[coll.biobank]:08d}", *row])
            written += n
            export.samples_per_collection[coll.id] += n
            export.samples_per_biobank[coll.biobank] += n
            if progress is not None and written - reported >= PROGRESS_EVERY:
                progress(written - reported)
                reported = written
    if progress is not None and written > reported:
        progress(written - reported)
    export.n_donors = donors


def _donor_rows(rng: random.Random, flavour: Flavour, pattern: str, coll: CollectionPlan,
                donor_id: str, n: int) -> list[list[str]]:
    """The CSV cells (without the local sample id) of one donor's ``n`` samples."""
    theme = coll.theme
    icd, orpha, sex = theme.pick_diagnosis(rng)
    if sex is None:
        sex = rng.choices(("female", "male", "other", "unknown"), (490, 490, 5, 15))[0]
    age = max(AGE_MIN, min(AGE_MAX, int(rng.gauss(theme.age_mean, theme.age_sd))))
    year = rng.randint(coll.first_year, YEAR_MAX)
    if flavour.undotted_icd10:
        icd = [c.replace(".", "") for c in icd]
    diagnoses = LIST_SEP.join(icd + orpha)
    uses = LIST_SEP.join(coll.use_conditions)
    dtypes = LIST_SEP.join(flavour.dataset_type_names[d] for d in coll.dataset_types)
    sex_cell = flavour.sex_names[sex]
    rows: list[list[str]] = []
    for i in range(n):
        if i:  # follow-up visits, months to a few years apart
            step = rng.choice((0, 0, 1, 1, 2, 3))
            if year + step <= YEAR_MAX and age + step <= AGE_MAX:
                year += step
                age += step
        stype = rng.choices(theme.sample_types, theme.sample_type_weights)[0]
        temps, tweights = TEMPERATURES[stype]
        temp = rng.choices(temps, tweights)[0]
        day = pattern.format(y=year, m=rng.randint(1, 12), d=rng.randint(1, 28))
        age_cell = "" if rng.random() < 0.005 else str(age)
        temp_cell = "" if rng.random() < 0.003 else flavour.temperature_names[temp]
        rows.append([donor_id, coll.site, coll.acronym, flavour.material_names[stype], temp_cell,
                     sex_cell, age_cell, day, diagnoses, uses, dtypes])
    return rows


BIOBANK_COLUMNS = ("id", "acronym", "name", "url", "juristic_person", "country",
                   "contact.email", "contact.role", "description", "quality_standards",
                   "capabilities")
COLLECTION_COLUMNS = ("id", "biobank", "name", "acronym", "description", "sample_source", "sex",
                      "age.min", "age.max", "age.unit", "dataset_types", "sample_types",
                      "storage_temperatures", "diagnoses", "design", "collection_setting",
                      "use_conditions", "status", "number_of_subjects", "size", "contact.email",
                      "quality_standards")


def _write_biobanks(export: GeneratedExport, flavour: Flavour) -> None:
    with export.biobanks_csv.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([c.replace(".", "_") for c in BIOBANK_COLUMNS])
        for b in export.biobanks:
            writer.writerow([b.id, b.acronym, b.name, b.url, b.juristic_person, flavour.country,
                             b.email, "Biobank office", b.description,
                             LIST_SEP.join(QUALITY_STANDARDS), LIST_SEP.join(CAPABILITIES)])


def _write_collections(export: GeneratedExport) -> None:
    emails = {b.id: b.email for b in export.biobanks}
    with export.collections_csv.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([c.replace(".", "_") for c in COLLECTION_COLUMNS])
        for c in export.collections:
            t = c.theme
            size = export.samples_per_collection.get(c.id, 0)
            temps = sorted({x for s in t.sample_types for x in TEMPERATURES[s][0]})
            writer.writerow([
                c.id, c.biobank, c.name, c.acronym, c.description, "Human", "female|male",
                AGE_MIN, AGE_MAX, "years", LIST_SEP.join(c.dataset_types),
                LIST_SEP.join(sorted(t.sample_types)), LIST_SEP.join(temps),
                LIST_SEP.join(t.collection_icd10() + t.orpha_codes()), LIST_SEP.join(t.design),
                LIST_SEP.join(t.setting), LIST_SEP.join(c.use_conditions), "Active",
                max(1, size * 2 // 5), size, emails[c.biobank], "iso-20387-2018",
            ])


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _identity_mapping(kind: str, columns: tuple[str, ...], delimiter: str) -> str:
    lines = [f'kind = "{kind}"', f"delimiter = {_q(delimiter)}",
             f"list_separator = {_q(LIST_SEP)}", "", "[columns]"]
    lines += [f"{_q(c)} = {_q(c.replace('.', '_'))}" for c in columns]
    return "\n".join(lines) + "\n"


def samples_mapping_toml(flavour: Flavour, export: GeneratedExport) -> str:
    """The importer mapping (TOML) from this flavour's columns and codes to the code lists."""
    lines = [f"# Mapping of the synthetic {flavour.country} LIMS export (node/generate.py)",
             'kind = "sample"', f"delimiter = {_q(flavour.delimiter)}",
             f"list_separator = {_q(LIST_SEP)}", "", "[columns]"]
    lines += [f"{k} = {_q(flavour.columns[k])}" for k in SAMPLE_FIELDS]
    tables: list[tuple[str, dict[str, str]]] = [
        ("biobank", {c.site: c.biobank for c in export.collections}),
        ("collection", {c.acronym: c.id for c in export.collections}),
        ("sample_type", {v: k for k, v in flavour.material_names.items()}),
        ("storage_temperature", {v: k for k, v in flavour.temperature_names.items()}),
        ("sex", {v: k for k, v in flavour.sex_names.items()}),
        ("dataset_types", {v: k for k, v in flavour.dataset_type_names.items() if v != k}),
    ]
    for name, table in tables:
        if table:
            lines += ["", f"[values.{name}]"]
            lines += [f"{_q(local)} = {_q(code)}" for local, code in table.items()]
    return "\n".join(lines) + "\n"


__all__ = ["GeneratedExport", "flavour_for", "generate", "plan", "samples_mapping_toml"]
