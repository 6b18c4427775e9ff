"""Database tables (SQLAlchemy Core): nodes, mirrored logs, the search cube, the own log.

Search index design ("cube"): sample groups with identical coded attributes collapse into
one `combos` row carrying interval sums of their counts (samples `n_min`..`n_max`, donors
`d_min`..`d_max`); `sample_groups` maps each live group id to its combo and its published bounds,
so that a withdraw or re-publish recomputes the right row. Multi-valued attributes
(diagnoses, use conditions, dataset types) live in small side tables keyed by combo.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
)
from sqlalchemy.sql.elements import ColumnClause

metadata = MetaData()

# the kind of a rotate-key leaf, as an SQL literal (partial indexes need it so)
ROTATION: ColumnClause[str] = literal_column("''")

nodes = Table(
    "nodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(255), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("country", String(8)),
    Column("name", Text),
    Column("descriptor", Text, nullable=False),  # JSON of /.well-known/biobank-node at enrolment
    Column("k", Integer, nullable=False, default=10),
    Column("state", String(16), nullable=False, default="active"),  # active | halted | retired
    Column("enrolled_at", String(32), nullable=False),
    Column("retired_at", String(32)),
    Column("tree_size", BigInteger, nullable=False, default=0),
    Column("root", Text),  # base64
    Column("compact", Text),  # JSON of protocol.merkle.CompactRange
    Column("checkpoint", Text),  # the node's signed note, verbatim
    Column("verified_at", String(32)),
    Column("last_attempt_at", String(32)),
    Column("last_success_at", String(32)),
    Column("last_error", Text),
    Column("remote_size", BigInteger),
    # since when the node signs a larger checkpoint without serving its leaves (None: it
    # does not); a "withholding" alert is raised once it lasts CATALOGUE_WITHHOLD_AFTER
    Column("withholding_since", String(32)),
)

leaves = Table(
    "leaves",
    metadata,
    Column("node_id", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("leaf", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("content", Text),  # JSON, null once erased
)
# the few rotate-key leaves (no kind, no id), found without reading a node's whole log
Index(
    "ix_leaves_rotations",
    leaves.c.node_id,
    leaves.c.idx,
    sqlite_where=leaves.c.kind == ROTATION,
    postgresql_where=leaves.c.kind == ROTATION,
)

# which accepted leaves belong to which record, to erase a withdrawn record's earlier contents.
# SQLite: a table, not an index on `leaves`: that one took every stored leaf in random key
# order, under the write lock (half of a large SQLite harvest); these rows are added when a
# step is accepted, in key order, by one INSERT ... SELECT (catalogue.harvest.apply.commit_final).
# PostgreSQL: a VIEW of the same name over `leaves` (`RECORDS_VIEW`), read through the partial
# index below, which the chunks' COPY maintains (no lock is shared there, and a table of its
# own cost a backend about 3.3 µs a leaf, its heap and its key: catalogue/README.md)
leaf_records = Table(
    "leaf_records",
    metadata,
    Column("node_id", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)
# PostgreSQL: what `leaf_records` reads. Its ids compared byte by byte (COLLATE "C": the
# same equality, and an order `index.superseded` only groups by): a database's own collation
# compares through the C library's, about 0.4 µs a leaf more in the chunks' COPY. The kind is
# left to the view's condition (a withdrawn record's few leaves, a step's groups)
Index(
    "ix_leaves_records",
    leaves.c.node_id,
    leaves.c.record_id.collate("C"),
    leaves.c.idx,
    postgresql_where=leaves.c.kind != ROTATION,
).ddl_if(dialect="postgresql")
RECORDS_VIEW = (
    'CREATE VIEW leaf_records AS SELECT node_id, kind, record_id COLLATE "C" AS record_id, idx'
    " FROM leaves WHERE kind <> ''"
)


records = Table(  # live biobank and collection records
    "records",
    metadata,
    Column("node_id", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("idx", BigInteger, nullable=False),
    Column("country", String(8)),
    Column("biobank", String(255)),
    Column("content", Text, nullable=False),
)

combos = Table(
    "combos",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node_id", Integer, nullable=False),
    # the SHA-256 of the combo's key as compact JSON (`harvest.index.combo_hash`): what the
    # harvest knows a combo by and, with the node, its unique key. The key itself is not stored
    # as text: every part of it is a column below (the lists as their JSON arrays)
    Column("khash", LargeBinary, nullable=False),
    Column("biobank", String(255), nullable=False),
    Column("collection", String(255), nullable=False),
    Column("country", String(8)),
    Column("sample_type", String(64)),
    Column("storage_temperature", String(32)),
    Column("sex", String(16)),
    Column("age_min", Integer),
    Column("age_max", Integer),
    Column("year_from", Integer),
    Column("year_to", Integer),
    # the multi-valued attributes, each a compact JSON array in the key's order (sorted), or
    # null when the combo has none (`harvest.index.encode_multi`): its diagnoses as
    # [system, code, code3, chapter] (code3, the ICD-10 category for block ranges, and the
    # chapter are null for other systems), its use conditions and dataset types as codes.
    # Part of the combo's row rather than a row per value in side tables: the search index
    # loads them with the combo and DCAT reads them from it
    Column("diagnoses", Text),
    Column("use_conditions", Text),
    Column("dataset_types", Text),
    # interval sums over the combo's groups: samples add up; donors are at least the largest
    # group's lower bound and at most the sum of upper bounds (one donor may be in several)
    Column("n_min", BigInteger, nullable=False, default=0),
    Column("n_max", BigInteger, nullable=False, default=0),
    Column("d_min", BigInteger, nullable=False, default=0),
    Column("d_max", BigInteger, nullable=False, default=0),
    # the size of the catalogue's own log once the step that last changed its counts or `country`
    # was accepted: every server's search index reads only the combos changed since the size
    # it holds (catalogue.search.cache); null for combos no accepted step has counted yet
    Column("changed", BigInteger),
)
Index("ix_combos_khash", combos.c.node_id, combos.c.khash, unique=True)
Index("ix_combos_changed", combos.c.changed)

sample_groups = Table(  # live sample groups: the combo each counts in and its published bounds
    "sample_groups",
    metadata,
    Column("node_id", Integer, primary_key=True),
    Column("group_id", String(64), primary_key=True),
    Column("idx", BigInteger, nullable=False),
    Column("combo_id", Integer, nullable=False),
    Column("s_min", BigInteger, nullable=False),
    Column("s_max", BigInteger, nullable=False),
    Column("d_min", BigInteger, nullable=False),
    Column("d_max", BigInteger, nullable=False),
    sqlite_with_rowid=False,  # one B-tree (the key) instead of a rowid table plus its index
)
# the groups of a combo, for its recount: PostgreSQL only. SQLite finds them in one pass
# over the node's groups (`harvest.index.write_counts`): the index cost every group
# written there about 0.7 µs of CPU; a database made before loses it (`db._upgrade`)
Index("ix_sample_groups_combo", sample_groups.c.combo_id).ddl_if(dialect="postgresql")

rejections = Table(
    "rejections",
    metadata,
    Column("node_id", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("problems", Text, nullable=False),  # JSON list of problem strings
)

alerts = Table(  # evidence of misbehaviour: both signed checkpoints are kept
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node_id", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # rollback | equivocation | withholding
    Column("message", Text, nullable=False),
    Column("old_checkpoint", Text),
    Column("new_checkpoint", Text),
    Column("created_at", String(32), nullable=False),
    Column("cleared_at", String(32)),
)

own_leaves = Table(
    "own_leaves",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
)

subtrees = Table(  # perfect-subtree hashes every protocol.merkle.STRIDE levels, for O(log n) proofs
    "subtrees",
    metadata,
    Column("log_id", Integer, primary_key=True, autoincrement=False),  # nodes.id; 0: own log
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

own_state = Table(
    "own_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("compact", Text, nullable=False),
    Column("checkpoint", Text, nullable=False),
)

harvest_staging = Table(  # a harvest step in progress: leaves beyond tree_size already stored
    "harvest_staging",
    metadata,
    Column("node_id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),  # leaves [0, size) stored; > nodes.tree_size
    Column("compact", Text, nullable=False),  # JSON CompactRange of those leaves
    Column("checkpoint", Text, nullable=False),  # the signed note they were verified under
)

# the sample groups of each staged chunk keyed as they were verified (`Chunk.add`, on the
# verifying side, where the content is parsed anyway): the final commit reads these instead
# of reading back and parsing every group's content under the write lock. Written in the
# chunk's transaction, deleted with the staging (final commit, discard); a chunk without a
# row here (or with a row of another format) is keyed from its stored leaves, as before
harvest_keyed = Table(
    "harvest_keyed",
    metadata,
    Column("node_id", Integer, primary_key=True, autoincrement=False),
    Column("lo", BigInteger, primary_key=True, autoincrement=False),  # the chunk's leaves
    Column("hi", BigInteger, nullable=False),  # [lo, hi)
    Column("data", LargeBinary, nullable=False),  # `catalogue.harvest.index.pack_keyed`
)

key_events = Table(  # catalogue revocations of node keys (rotations live in the mirrored leaves)
    "key_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # revoke
    Column("from_size", BigInteger, nullable=False),
    Column("key", Text, nullable=False),  # the key in force for sizes > from_size
    Column("revoked_key", Text, nullable=False),
    Column("own_leaf", BigInteger, nullable=False),  # index of the `revoke` leaf in our log
    Column("created_at", String(32), nullable=False),
)
Index("ix_key_events_node", key_events.c.node_id)

harvest_refusals = Table(  # failed or refused harvest attempts, counted by kind (for metrics)
    "harvest_refusals",
    metadata,
    Column("node_id", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(64), primary_key=True),  # error class: FetchError, SignatureError, ...
    Column("n", BigInteger, nullable=False),
)
