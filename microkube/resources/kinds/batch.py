"""batch/v1 strategies: Job and CronJob.

Mirrors ``pkg/apis/batch/v1/defaults.go`` and ``pkg/registry/batch/job/strategy.go``:
a Job without ``manualSelector`` gets a generated selector on its own uid and
the matching template labels; its template and selector are immutable.
"""

from __future__ import annotations

from typing import Any

from croniter import croniter

from microkube import errors
from microkube.resources import podspec
from microkube.resources.strategy import Strategy, register

_MAX_INT32 = 2**31 - 1
_PER_INDEX_COMPLETIONS = 100_000  # completionsSoftLimit of pkg/apis/batch/validation
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


@register("batch", "Job")
class JobStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
            spec["parallelism"] = 1
        spec.setdefault("parallelism", 1)
        # backoffLimitPerIndex replaces the global limit (defaults.go: MaxInt32 then).
        spec.setdefault(
            "backoffLimit", _MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
        )
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        if spec.get("podFailurePolicy") is None:
            spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        else:
            spec.setdefault("podReplacementPolicy", "Failed")
        podspec.default_template(spec.get("template"))

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        super().prepare_for_create(obj, reg)
        spec = obj.get("spec") or {}
        if not spec.get("manualSelector"):
            uid = obj["metadata"]["uid"]
            name = obj["metadata"]["name"]
            labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
            if not spec.get("selector"):
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
            tlabels = tmeta.setdefault("labels", {})
            for k, v in labels.items():
                tlabels.setdefault(k, v)

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [errors.required("spec")]
        causes = podspec.validate_pod_spec(
            (spec.get("template") or {}).get("spec"), "spec.template.spec", template=True
        )
        restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if restart not in ("OnFailure", "Never"):
            causes.append(
                errors.unsupported_value(
                    "spec.template.spec.restartPolicy", restart, ["OnFailure", "Never"]
                )
            )
        for f in (
            "parallelism",
            "completions",
            "backoffLimit",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
        ):
            v = spec.get(f)
            if v is not None and (not isinstance(v, int) or v < 0):
                causes.append(
                    errors.invalid_value(f"spec.{f}", v, "must be greater than or equal to 0")
                )
        if spec.get("completionMode") not in ("NonIndexed", "Indexed"):
            causes.append(
                errors.unsupported_value(
                    "spec.completionMode", spec.get("completionMode"), ["NonIndexed", "Indexed"]
                )
            )
        if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
            causes.append(errors.required("spec.completions"))
        causes += _per_index_errors(spec)
        return causes

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        causes = self.validate(new, reg)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        if ns.get("selector") != os_.get("selector"):
            causes.append(
                errors.invalid_value("spec.selector", ns.get("selector"), "field is immutable")
            )
        if ns.get("template") != os_.get("template") and not os_.get("suspend"):
            causes.append(
                errors.invalid_value("spec.template", ns.get("template"), "field is immutable")
            )
        if (
            ns.get("completions") != os_.get("completions")
            and ns.get("completionMode") != "Indexed"
        ):
            causes.append(
                errors.invalid_value(
                    "spec.completions", ns.get("completions"), "field is immutable"
                )
            )
        return causes


def _per_index_errors(spec: dict[str, Any]) -> list[errors.Cause]:
    """backoffLimitPerIndex/maxFailedIndexes rules of ``ValidateJobSpec``."""
    causes: list[errors.Cause] = []
    per_index, most = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if most is not None and per_index is None:
        causes.append(
            errors.Cause(
                "FieldValueRequired",
                "Required value: when maxFailedIndexes is specified",
                "spec.backoffLimitPerIndex",
            )
        )
    if spec.get("completionMode") != "Indexed":
        for f, v in (("backoffLimitPerIndex", per_index), ("maxFailedIndexes", most)):
            if v is not None:
                causes.append(
                    errors.invalid_value(f"spec.{f}", v, "requires indexed completion mode")
                )
    elif isinstance(most, int) and isinstance(spec.get("completions"), int):
        if most > spec["completions"]:
            causes.append(
                errors.invalid_value(
                    "spec.maxFailedIndexes", most, "must be less than or equal to completions"
                )
            )
    if per_index is not None and isinstance(spec.get("completions"), int):
        if spec["completions"] > _PER_INDEX_COMPLETIONS:
            causes.append(
                errors.invalid_value(
                    "spec.completions",
                    spec["completions"],
                    f"must be less than or equal to {_PER_INDEX_COMPLETIONS} when backoffLimitPerIndex is specified",
                )
            )
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(rule, dict) and rule.get("action") == "FailIndex" and per_index is None:
            causes.append(
                errors.invalid_value(
                    f"spec.podFailurePolicy.rules[{i}].action",
                    "FailIndex",
                    "requires the backoffLimitPerIndex to be set",
                )
            )
    return causes


def schedule_errors(schedule: Any) -> list[str]:
    if not isinstance(schedule, str) or not schedule.strip():
        return ["Required value"]
    s = schedule.strip()
    if s.startswith("TZ=") or s.startswith("CRON_TZ="):
        return ["cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
    if s in _MACROS:
        return []
    if s.startswith("@every "):
        return []
    if len(s.split()) != 5 or not croniter.is_valid(s):
        return [f"unparseable schedule: {s}"]
    return []


@register("batch", "CronJob")
class CronJobStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        jt = spec.setdefault("jobTemplate", {})
        jt.setdefault("metadata", {})
        jspec = jt.setdefault("spec", {})
        if isinstance(jspec, dict):
            jspec.setdefault(
                "backoffLimit", _MAX_INT32 if jspec.get("backoffLimitPerIndex") is not None else 6
            )
            jspec.setdefault("completionMode", "NonIndexed")
            jspec.setdefault("suspend", False)
            if jspec.get("completions") is None and jspec.get("parallelism") is None:
                jspec["completions"] = 1
                jspec["parallelism"] = 1
            jspec.setdefault("parallelism", 1)
            jspec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
            podspec.default_template(jspec.get("template"))

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [errors.required("spec")]
        causes = [
            errors.invalid_value("spec.schedule", spec.get("schedule"), e)
            for e in schedule_errors(spec.get("schedule"))
        ]
        if spec.get("concurrencyPolicy") not in ("Allow", "Forbid", "Replace"):
            causes.append(
                errors.unsupported_value(
                    "spec.concurrencyPolicy",
                    spec.get("concurrencyPolicy"),
                    ["Allow", "Forbid", "Replace"],
                )
            )
        tz = spec.get("timeZone")
        if tz is not None:
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(tz)
            except Exception:
                causes.append(
                    errors.invalid_value("spec.timeZone", tz, "unknown time zone " + str(tz))
                )
        tspec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get(
            "spec"
        )
        causes += podspec.validate_pod_spec(
            tspec, "spec.jobTemplate.spec.template.spec", template=True
        )
        restart = (tspec or {}).get("restartPolicy")
        if restart not in ("OnFailure", "Never"):
            causes.append(
                errors.unsupported_value(
                    "spec.jobTemplate.spec.template.spec.restartPolicy",
                    restart,
                    ["OnFailure", "Never"],
                )
            )
        name = obj.get("metadata", {}).get("name", "")
        if len(name) > 52:
            causes.append(
                errors.invalid_value("metadata.name", name, "must be no more than 52 characters")
            )
        return causes
