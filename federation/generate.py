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
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


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
    use_condition_sets: tuple[tuple[str, ...], ...]
    comorbidity_rate: float = 0.15

    def pick_diagnosis(self, rng: random.Random) -> tuple[list[str], list[str], str | None]:
        """One donor's ICD-10 codes, ORPHA codes and (for sex-specific diseases) sex."""
        icd, orpha, sex, _ = rng.choices(self.diagnoses, self.diagnosis_weights)[0]
        codes = list(icd)
        if rng.random() < self.comorbidity_rate:
            extra = rng.choice(COMORBIDITIES)
            if extra not in codes:
                codes.append(extra)
        return codes, list(orpha), sex

    @property
    def diagnosis_weights(self) -> tuple[int, ...]:
        return tuple(d[3] for d in self.diagnoses)

    def collection_icd10(self) -> list[str]:
        return sorted({c for d in self.diagnoses for c in d[0]})

    def orpha_codes(self) -> list[str]:
        return sorted({c for d in self.diagnoses for c in d[1]})


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


def _load_themes() -> tuple[
    tuple[str, ...], dict[str, tuple[tuple[str, ...], tuple[int, ...]]], dict[str, Theme]
]:
    """Comorbidities, storage temperatures by sample type and the themes, from themes.json."""
    doc = json.loads((DATA / "themes.json").read_text(encoding="utf-8"))
    temperatures = {
        stype: (tuple(weights), tuple(weights.values()))
        for stype, weights in doc["storage_temperatures"].items()
    }
    themes = {
        name: Theme(
            name=name,
            sample_types=tuple(t["sample_types"]),
            sample_type_weights=tuple(t["sample_types"].values()),
            age_mean=t["age_mean"],
            age_sd=t["age_sd"],
            diagnoses=tuple(
                (tuple(d["icd10"]), tuple(d["orpha"]), d["sex"], d["weight"])
                for d in t["diagnoses"]
            ),
            dataset_types=tuple(t["dataset_types"]),
            design=tuple(t["design"]),
            setting=tuple(t["setting"]),
            use_condition_sets=tuple(tuple(s) for s in t["use_condition_sets"]),
            comorbidity_rate=t["comorbidity_rate"],
        )
        for name, t in doc["themes"].items()
    }
    return tuple(doc["comorbidities"]), temperatures, themes


def _load_flavour(path: Path) -> Flavour:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return Flavour(**{**doc, "biobanks": tuple(BiobankSpec(**b) for b in doc["biobanks"])})


# storage temperatures by sample type, as (codes, weights)
COMORBIDITIES, TEMPERATURES, THEMES = _load_themes()
# how a LIMS in each country names its columns and codes (data/countries/CC.json)
FLAVOURS: dict[str, Flavour] = {
    f.country: f for f in map(_load_flavour, sorted((DATA / "countries").glob("*.json")))
}


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
        base,
        country=code,
        origin=f"node.biobank-{low}-demo.example/biobank-node",
        node_name=f"Biobank Node {code} (demo)",
        organisation=f"National Biobank Network {code}",
        contact_email=f"node@biobank-{low}-demo.example",
        delimiter=",",
        date_format="%Y-%m-%d",
        biobanks=(
            BiobankSpec(
                f"NB{code}",
                f"National Biobank {code}",
                "Capital City",
                f"National Institute of Health {code}",
                f"national-biobank-{low}.example",
            ),
            BiobankSpec(
                f"UH{code}",
                f"University Hospital Biobank {code}",
                "University City",
                f"University Hospital {code}",
                f"uh-biobank-{low}.example",
            ),
        ),
    )


LIST_SEP = "|"
YEAR_MIN, YEAR_MAX = 1995, 2025
AGE_MIN, AGE_MAX = 18, 95
SAMPLES_PER_DONOR = (1, 2, 3, 4, 5, 6)
SAMPLES_PER_DONOR_WEIGHTS = (30, 30, 20, 10, 6, 4)
SAMPLE_FIELDS = (
    "local_id",
    "donor_id",
    "biobank",
    "collection",
    "sample_type",
    "storage_temperature",
    "sex",
    "age",
    "date",
    "diagnoses",
    "use_conditions",
    "dataset_types",
)
PROGRESS_EVERY = 10_000
QUALITY_STANDARDS = ("iso-9001", "iso-20387-2018")
CAPABILITIES = ("SampleProcessing", "SampleStorage")


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
        biobanks.append(
            BiobankPlan(
                id=bb_id,
                acronym=spec.acronym,
                name=spec.name,
                city=spec.city,
                juristic_person=spec.juristic_person,
                url=f"https://www.{spec.domain}/",
                email=f"biobank@{spec.domain}",
                description=flavour.biobank_description.format(name=spec.name, city=spec.city),
                prefix=f"{spec.acronym.upper()[:4]}{i + 1}",
            )
        )
        for theme_name in sorted(rng.sample(theme_names, k=rng.choice((2, 3)))):
            theme = THEMES[theme_name]
            label = flavour.theme_labels[theme_name]
            collections.append(
                CollectionPlan(
                    id=f"{bb_id}:collection:{theme_name.upper()}",
                    biobank=bb_id,
                    site=spec.acronym,
                    theme=theme,
                    acronym=f"{spec.acronym}-{theme_name[:4].upper()}",
                    name=f"{label} {spec.city}",
                    description=flavour.collection_description.format(label=label, city=spec.city),
                    first_year=rng.randint(YEAR_MIN, 2015),
                    use_conditions=rng.choice(theme.use_condition_sets),
                    dataset_types=tuple(
                        sorted(
                            rng.sample(
                                theme.dataset_types, k=rng.randint(1, len(theme.dataset_types))
                            )
                        )
                    ),
                    weight=rng.randint(1, 5),
                )
            )
    return flavour, biobanks, collections


def generate(
    country: str,
    n_samples: int,
    seed: int,
    out_dir: Path,
    progress: Callable[[int], None] | None = None,
) -> GeneratedExport:
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
        country=flavour.country,
        seed=seed,
        out_dir=out_dir,
        samples_csv=out_dir / "samples.csv",
        samples_mapping=out_dir / "samples.mapping.toml",
        biobanks_csv=out_dir / "biobanks.csv",
        biobanks_mapping=out_dir / "biobanks.mapping.toml",
        collections_csv=out_dir / "collections.csv",
        collections_mapping=out_dir / "collections.mapping.toml",
        n_samples=n_samples,
        origin=flavour.origin,
        node_name=flavour.node_name,
        organisation=flavour.organisation,
        contact_email=flavour.contact_email,
        biobanks=biobanks,
        collections=collections,
        samples_per_collection={c.id: 0 for c in collections},
        samples_per_biobank={b.id: 0 for b in biobanks},
    )
    _write_samples(export, flavour, random.Random(f"samples:{flavour.country}:{seed}"), progress)
    _write_biobanks(export, flavour)
    _write_collections(export)
    export.samples_mapping.write_text(samples_mapping_toml(flavour, export), encoding="utf-8")
    export.biobanks_mapping.write_text(
        _identity_mapping("biobank", BIOBANK_COLUMNS, ","), encoding="utf-8"
    )
    export.collections_mapping.write_text(
        _identity_mapping("collection", COLLECTION_COLUMNS, ","), encoding="utf-8"
    )
    return export


def _date_pattern(fmt: str) -> str:
    return fmt.replace("%d", "{d:02d}").replace("%m", "{m:02d}").replace("%Y", "{y}")


def _write_samples(
    export: GeneratedExport,
    flavour: Flavour,
    rng: random.Random,
    progress: Callable[[int], None] | None,
) -> None:
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
            n = min(
                rng.choices(SAMPLES_PER_DONOR, SAMPLES_PER_DONOR_WEIGHTS)[0],
                export.n_samples - written,
            )
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


def _donor_rows(
    rng: random.Random, flavour: Flavour, pattern: str, coll: CollectionPlan, donor_id: str, n: int
) -> list[list[str]]:
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
        rows.append(
            [
                donor_id,
                coll.site,
                coll.acronym,
                flavour.material_names[stype],
                temp_cell,
                sex_cell,
                age_cell,
                day,
                diagnoses,
                uses,
                dtypes,
            ]
        )
    return rows


BIOBANK_COLUMNS = (
    "id",
    "acronym",
    "name",
    "url",
    "juristic_person",
    "country",
    "contact.email",
    "contact.role",
    "description",
    "quality_standards",
    "capabilities",
)
COLLECTION_COLUMNS = (
    "id",
    "biobank",
    "name",
    "acronym",
    "description",
    "sample_source",
    "sex",
    "age.min",
    "age.max",
    "age.unit",
    "dataset_types",
    "sample_types",
    "storage_temperatures",
    "diagnoses",
    "design",
    "collection_setting",
    "use_conditions",
    "status",
    "number_of_subjects",
    "size",
    "contact.email",
    "quality_standards",
)


def _write_biobanks(export: GeneratedExport, flavour: Flavour) -> None:
    with export.biobanks_csv.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([c.replace(".", "_") for c in BIOBANK_COLUMNS])
        for b in export.biobanks:
            writer.writerow(
                [
                    b.id,
                    b.acronym,
                    b.name,
                    b.url,
                    b.juristic_person,
                    flavour.country,
                    b.email,
                    "Biobank office",
                    b.description,
                    LIST_SEP.join(QUALITY_STANDARDS),
                    LIST_SEP.join(CAPABILITIES),
                ]
            )


def _write_collections(export: GeneratedExport) -> None:
    emails = {b.id: b.email for b in export.biobanks}
    with export.collections_csv.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([c.replace(".", "_") for c in COLLECTION_COLUMNS])
        for c in export.collections:
            t = c.theme
            size = export.samples_per_collection.get(c.id, 0)
            temps = sorted({x for s in t.sample_types for x in TEMPERATURES[s][0]})
            writer.writerow(
                [
                    c.id,
                    c.biobank,
                    c.name,
                    c.acronym,
                    c.description,
                    "Human",
                    "female|male",
                    AGE_MIN,
                    AGE_MAX,
                    "years",
                    LIST_SEP.join(c.dataset_types),
                    LIST_SEP.join(sorted(t.sample_types)),
                    LIST_SEP.join(temps),
                    LIST_SEP.join(t.collection_icd10() + t.orpha_codes()),
                    LIST_SEP.join(t.design),
                    LIST_SEP.join(t.setting),
                    LIST_SEP.join(c.use_conditions),
                    "Active",
                    max(1, size * 2 // 5),
                    size,
                    emails[c.biobank],
                    "iso-20387-2018",
                ]
            )


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _identity_mapping(kind: str, columns: tuple[str, ...], delimiter: str) -> str:
    lines = [
        f'kind = "{kind}"',
        f"delimiter = {_q(delimiter)}",
        f"list_separator = {_q(LIST_SEP)}",
        "",
        "[columns]",
    ]
    lines += [f"{_q(c)} = {_q(c.replace('.', '_'))}" for c in columns]
    return "\n".join(lines) + "\n"


def samples_mapping_toml(flavour: Flavour, export: GeneratedExport) -> str:
    """The importer mapping (TOML) from this flavour's columns and codes to the code lists."""
    lines = [
        f"# Mapping of the synthetic {flavour.country} LIMS export (federation/generate.py)",
        'kind = "sample"',
        f"delimiter = {_q(flavour.delimiter)}",
        f"list_separator = {_q(LIST_SEP)}",
        "",
        "[columns]",
    ]
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
