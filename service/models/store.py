"""The model registry: each stored model's record in Redis and its files on disk.

- `model:{id}`: a hash with the record (JSON for structured fields);
- `models:all`, `models:kind:{kind}`: sorted sets of ids by creation time, newest last;
- `models:aliases`: a hash from alias name to model id (like TF Serving's version labels);
- files: `ARTIFACTS_DIR/models/{id}/model.keras` and `model.h5`, in a local folder or an object
  store (`service.artifacts`): registered only once they are all there.

Model ids are 32 lowercase hex digits; anything else is rejected before a path is built, so
an id can never point outside the model store. Aliases are short names that cannot look like
an id, so a reference is always unambiguously one or the other.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from redis import Redis

from service import redis_keys
from service.artifacts import MODELS_FOLDER, ArtifactStore, ArtifactStoreUnavailable
from service.errors import ConflictError, NotFoundError, ServiceError
from service.jobs.kinds import JOB_KINDS
from service.redis_keys import MODELS_ALIASES, MODELS_CHANGED_CHANNEL, model_key, models_by_kind
from service.redis_pages import newest_first

logger = logging.getLogger(__name__)

MODEL_ID_PATTERN = re.compile(r"[0-9a-f]{32}")  # always with fullmatch
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
ModelFormat = Literal["keras", "h5"]
_JSON_FIELDS = ("params", "metrics", "files")

# A model's record by id, by alias, or the newest of a kind, in one round trip: the prediction
# endpoints run it on every request, so a new model or a moved alias answers the next one.
FIND_MODEL_SCRIPT = f"""
local mode, name = ARGV[1], ARGV[2]
local model_id = name
if mode == 'alias' then
  model_id = redis.call('HGET', '{MODELS_ALIASES}', name)
elseif mode == 'newest' then
  model_id = redis.call('ZREVRANGE', '{redis_keys.MODELS_BY_KIND_PREFIX}' .. name, 0, 0)[1]
end
if not model_id then return {{}} end
return redis.call('HGETALL', '{redis_keys.MODEL_PREFIX}' .. model_id)
"""


# Removes a model's record and index entries unless an alias names it, in one step; returns
# the aliases that name it (nothing removed), or {} when removed, or nil when there is none.
DELETE_MODEL_SCRIPT = f"""
local model_id = ARGV[1]
local kind = redis.call('HGET', '{redis_keys.MODEL_PREFIX}' .. model_id, 'kind')
if not kind then return nil end
local naming = {{}}
local aliases = redis.call('HGETALL', '{MODELS_ALIASES}')
for i = 1, #aliases, 2 do
  if aliases[i + 1] == model_id then table.insert(naming, aliases[i]) end
end
if #naming > 0 then return naming end
redis.call('DEL', '{redis_keys.MODEL_PREFIX}' .. model_id)
redis.call('ZREM', '{redis_keys.MODELS_ALL}', model_id)
redis.call('ZREM', '{redis_keys.MODELS_BY_KIND_PREFIX}' .. kind, model_id)
redis.call('PUBLISH', '{MODELS_CHANGED_CHANNEL}', model_id)
return {{}}
"""


# Points an alias at a model if the model exists; returns {found, the id it named before or ''}.
SET_ALIAS_SCRIPT = f"""
local alias, model_id = ARGV[1], ARGV[2]
if redis.call('EXISTS', '{redis_keys.MODEL_PREFIX}' .. model_id) == 0 then return {{0, ''}} end
local previous = redis.call('HGET', '{MODELS_ALIASES}', alias) or ''
redis.call('HSET', '{MODELS_ALIASES}', alias, model_id)
redis.call('PUBLISH', '{MODELS_CHANGED_CHANNEL}', model_id)
return {{1, previous}}
"""


class ModelRecord(BaseModel):
    id: str
    kind: str
    job_id: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, str]
    created_at: datetime
    aliases: list[str] = []


class InvalidAliasError(ServiceError):
    status_code = 422
    code = "invalid_alias"


def model_fields(
    model_id: str,
    kind: str,
    job_id: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    files: dict[str, str],
    created_at: float,
) -> dict[str, str]:
    """A model's record as stored in its hash (`ModelStore.register`, and a job's success,
    which registers its model in the same step)."""
    return {
        "id": model_id,
        "kind": kind,
        "job_id": job_id,
        "params": json.dumps(params),
        "metrics": json.dumps(metrics),
        "files": json.dumps(files),
        "created_at": repr(created_at),
    }


class ModelStore:
    def __init__(self, redis: Redis, artifacts: ArtifactStore | Path) -> None:
        self.redis = redis
        self.artifacts = ArtifactStore.of(artifacts)
        self._find = redis.register_script(FIND_MODEL_SCRIPT)
        self._delete = redis.register_script(DELETE_MODEL_SCRIPT)
        self._set_alias = redis.register_script(SET_ALIAS_SCRIPT)

    def model_dir(self, model_id: str) -> Path:
        """The local folder of the model's files (with an object store: where they are trained
        before `upload`, or downloaded to); `NotFoundError` for a malformed id."""
        return self.artifacts.local_path(_model_key(model_id))

    def upload(
        self, model_id: str, files: dict[str, str], on_file: Callable[[], None] | None = None
    ) -> None:
        """Store the `files` (format: name) of a model trained into `model_dir` where every
        process finds them (an object store; nothing to do for a local folder), before it is
        registered. `ValueError` when a file is missing or misnamed: a model is never
        registered without them."""
        key = _model_key(model_id)
        names = sorted(files.values())
        if not names or not all(FILE_NAME_PATTERN.fullmatch(name) for name in names):
            raise ValueError(f"Model {model_id} has no files to store, or misnamed ones: {files}")
        try:
            self.artifacts.upload(key, names, on_file)
        except FileNotFoundError as error:
            raise ValueError(f"Model {model_id}'s files are incomplete: {error}") from None
        self.artifacts.mark_cached(key)

    def register(
        self,
        model_id: str,
        kind: str,
        job_id: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        files: dict[str, str],
    ) -> ModelRecord:
        """Record a model whose files are already in `model_dir(model_id)`."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            model_key(model_id),
            mapping=model_fields(model_id, kind, job_id, params, metrics, files, now),
        )
        pipe.zadd(redis_keys.MODELS_ALL, {model_id: now})
        pipe.zadd(models_by_kind(kind), {model_id: now})
        pipe.publish(MODELS_CHANGED_CHANNEL, model_id)
        pipe.execute()
        return self.get(model_id)

    def delete(self, model_id: str) -> None:
        """Remove a model's record, then its files. `ConflictError` while an alias names it,
        `NotFoundError` when there is no such model."""
        self.model_dir(model_id)  # a malformed id: NotFoundError before any round trip
        self.artifacts.check_reachable()  # 503 with nothing deleted, rather than orphan files
        naming = self._delete(args=[model_id])
        if naming is None:
            raise NotFoundError(_not_found_message(model_id))
        if naming:
            raise ConflictError(
                f"Model {model_id} is named by the alias(es) {', '.join(sorted(naming))}, which "
                "clients use; nothing was deleted. Move or delete them first (PUT "
                "/models/{other}/aliases/{alias} or DELETE /models/aliases/{alias})."
            )
        self._remove_files(model_id)

    def exists(self, model_id: str) -> bool:
        return bool(self.redis.exists(model_key(model_id)))

    def discard_files(self, model_id: str) -> None:
        """Remove files of a model that will not be registered (its job did not succeed)."""
        self._remove_files(model_id)

    def _remove_files(self, model_id: str) -> None:
        """Remove the files of a model no record names any more (none will again: ids are
        never reused); files the object store keeps for now are only logged."""
        try:
            self.artifacts.remove(_model_key(model_id))
        except ArtifactStoreUnavailable as error:
            logger.warning("Model %s's files are left in the store: %s", model_id, error)

    def get(self, model_id: str) -> ModelRecord:
        raw = (
            self.redis.hgetall(model_key(model_id)) if MODEL_ID_PATTERN.fullmatch(model_id) else {}
        )
        if not raw:
            raise NotFoundError(_not_found_message(model_id))
        return self._with_aliases([_decode(raw)])[0]

    def resolve(self, reference: str) -> ModelRecord:
        """The model a reference names, a model id or an alias, with its aliases."""
        return self._with_aliases([self.find(reference)])[0]

    def find(self, reference: str) -> ModelRecord:
        """The model a reference (id or alias) names, in one round trip, without its aliases."""
        return found_model(self._find(args=find_by_reference(reference)), reference)

    def digit_model(self, reference: str) -> ModelRecord:
        """The stored digit model a reference names: an id, an alias, or a kind (its newest).
        `ValueError` saying what is wrong when there is none of that kind or it is another
        kind; `NotFoundError` for an unknown id or alias."""
        if reference in DIGIT_KINDS:
            record = self.newest(reference)
            if record is None:
                raise ValueError(
                    f"No {reference} model is stored yet to start from; train one first (POST "
                    f"/presets/{reference}/submit) or name another with digit_model."
                )
        else:
            record = self.find(reference)
        if record.kind not in DIGIT_KINDS:
            raise ValueError(
                f"digit_model {reference!r} is a {record.kind!r} model; a calculator starts "
                f"from a digit model of kind {' or '.join(DIGIT_KINDS)}."
            )
        return record

    def newest(self, kind: str) -> ModelRecord | None:
        """The newest model of `kind` (without its aliases), in one round trip."""
        raw = self._find(args=find_newest(kind))
        return found_model(raw, kind) if raw else None

    def list(
        self, kind: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[ModelRecord], int]:
        """One page of models, newest first, and how many match in all."""
        index = models_by_kind(kind) if kind else redis_keys.MODELS_ALL
        items, total = newest_first(self.redis, index, model_key, _decode, limit, offset)
        return self._with_aliases(items), total

    def set_alias(self, alias: str, model_id: str) -> str | None:
        """Point `alias` at a stored model; returns the model it named before, if any."""
        if not ALIAS_PATTERN.fullmatch(alias) or MODEL_ID_PATTERN.fullmatch(alias):
            raise InvalidAliasError(
                f"{alias!r} is not a valid alias: use 1 to 63 characters, lowercase letters, "
                f"digits, '.', '_' or '-', starting with a letter, and not a 32-character hex "
                f"string (that would read as a model id). Example: 'production'."
            )
        if alias in JOB_KINDS:
            raise InvalidAliasError(
                f"{alias!r} is a job kind, which names the newest model of that kind in "
                f"/v1/models/{alias}; choose another alias, e.g. '{alias}-production'."
            )
        # In one step with the check that the model exists: a delete cannot come between.
        found, previous = self._set_alias(args=[alias, model_id])
        if not found:
            raise NotFoundError(_not_found_message(model_id))
        return previous if previous not in ("", model_id) else None

    def delete_alias(self, alias: str) -> str:
        """Remove `alias`; returns the id it named. `NotFoundError` if there is no such alias."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(MODELS_ALIASES, alias)
        pipe.hdel(MODELS_ALIASES, alias)
        pipe.publish(MODELS_CHANGED_CHANNEL, alias)
        model_id, deleted, _ = pipe.execute()
        if not deleted:
            raise NotFoundError(f"No alias named {alias!r}. List aliases with GET /models.")
        return model_id

    def pinned_ids(self, default_kinds: tuple[str, ...]) -> set[str]:
        """Ids of the newest model of each default kind and of every aliased model: those that
        answer when a client names no model, or a stable name."""
        pipe = self.redis.pipeline(transaction=False)
        for kind in default_kinds:
            pipe.zrevrange(models_by_kind(kind), 0, 0)
        pipe.hvals(MODELS_ALIASES)
        *newest, aliased = pipe.execute()
        return {ids[0] for ids in newest if ids} | set(aliased)

    def aliases(self) -> dict[str, str]:
        """Every alias and the model id it names."""
        return self.redis.hgetall(MODELS_ALIASES)

    def _with_aliases(self, records: list[ModelRecord]) -> list[ModelRecord]:
        by_model: dict[str, list[str]] = {}
        for alias, model_id in sorted(self.aliases().items()):
            by_model.setdefault(model_id, []).append(alias)
        return [
            record.model_copy(update={"aliases": by_model.get(record.id, [])}) for record in records
        ]

    def file_path(self, record: ModelRecord, model_format: ModelFormat) -> Path:
        """A local path of the model's file in `model_format` (downloaded from an object store
        on first use); `NotFoundError` if there is none."""
        file_name = record.files.get(model_format)
        # A plain name inside the model's folder, whatever the record in Redis says.
        confined = file_name is not None and FILE_NAME_PATTERN.fullmatch(file_name) is not None
        path = None
        if confined:
            path = self.artifacts.fetch_file(f"{_model_key(record.id)}/{file_name}")
        if path is None:
            raise NotFoundError(
                f"Model {record.id!r} has no {model_format!r} file in the model store "
                f"(formats recorded: {sorted(record.files)})."
            )
        return path


DIGIT_KINDS = ("cnn", "mlp")  # kinds whose models read one digit (10 probabilities)


def find_by_reference(reference: str) -> list[str]:
    """FIND_MODEL_SCRIPT's arguments for a model id or an alias."""
    if len(reference) > 63:  # longer than any id or alias; not worth a round trip
        return ["id", ""]
    return ["id" if MODEL_ID_PATTERN.fullmatch(reference) else "alias", reference]


def find_newest(kind: str) -> list[str]:
    """FIND_MODEL_SCRIPT's arguments for the newest model of a kind."""
    return ["newest", kind]


def found_model(raw: list[str], reference: str) -> ModelRecord:
    """The record FIND_MODEL_SCRIPT returned; `NotFoundError` when it found none."""
    if not raw:
        raise NotFoundError(
            f"No model or alias named {reference!r}. A model is named by its 32-character id "
            f"or by an alias; list both with GET /models."
        )
    return _decode(dict(zip(raw[::2], raw[1::2], strict=True)))


def _model_key(model_id: str) -> str:
    """The model's folder in the artifact store; `NotFoundError` for a malformed id (so an id
    can never name another folder)."""
    if not MODEL_ID_PATTERN.fullmatch(model_id):
        raise NotFoundError(_not_found_message(model_id))
    return f"{MODELS_FOLDER}/{model_id}"


def _not_found_message(model_id: str) -> str:
    return (
        f"No model with id {model_id!r}. List stored models with GET /models; a job that "
        f"trains a model names it in its result's 'model_id'."
    )


def _decode(raw: dict[str, str]) -> ModelRecord:
    values: dict[str, Any] = dict(raw)
    for field in _JSON_FIELDS:
        values[field] = json.loads(values[field])
    values["created_at"] = datetime.fromtimestamp(float(values["created_at"]), tz=UTC)
    return ModelRecord.model_validate(values)
