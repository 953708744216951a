"""RBAC authorization: may this user do this verb on this resource or path?

Mirrors ``plugin/pkg/auth/authorizer/rbac``: a request is allowed when some
binding that names the user (directly, through a group or as a service
account) grants a rule matching it::

    request ─► RequestInfo ─► Attributes(user, verb, group, resource, subresource, ns, name, path)
        ─► system:masters? allow
        ─► ClusterRoleBindings ─► ClusterRole rules         (any namespace, cluster scope, URLs)
        ─► RoleBindings in ns  ─► Role / ClusterRole rules  (that namespace only)
        ─► no match: 403 with upstream's message

Rules follow ``rbac/v1`` helpers: ``*`` wildcards for verbs, groups and
resources, ``<resource>/<subresource>`` and ``*/<subresource>``, optional
``resourceNames`` and ``nonResourceURLs`` with a trailing ``*`` prefix match.
ClusterRoles with an ``aggregationRule`` take the rules of every ClusterRole
their selectors match, computed at evaluation time (transitively: ``admin``
includes ``edit`` includes ``view``), so the result never lags a role change.

The RBAC objects are read through the registry into a :class:`Snapshot`,
rebuilt only when a Role, ClusterRole or binding changes: the authorizer
keeps one store watcher per RBAC resource and drains it (without waiting) on
each request, so writes to other kinds cost nothing.  Decisions are memoized
per snapshot, keyed by the request's attributes (without the object name when
no rule of the user lists ``resourceNames``), and so is the list of bindings
that name a user: a repeated request costs one dict lookup
(``bench/bench_rbac.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from microkube import errors
from microkube.api.requestinfo import RequestInfo
from microkube.objects.selectors import LabelSelector
from microkube.resources.registry import Registry

RBAC = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
Obj = dict[str, Any]

_NON_RESOURCE_VERBS = {"create": "post", "update": "put"}


@dataclass(frozen=True)
class Attributes:
    """What is being asked (mirrors ``authorizer.AttributesRecord``)."""

    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @classmethod
    def from_request(cls, user: Obj, info: RequestInfo) -> Attributes:
        if not info.is_resource_request:
            verb = _NON_RESOURCE_VERBS.get(info.verb, info.verb)
            return cls(_name(user), _groups(user), verb, False, path=info.path)
        return cls(
            _name(user),
            _groups(user),
            info.verb,
            True,
            group=info.group,
            resource=info.resource,
            subresource=info.subresource,
            namespace=info.namespace,
            name=info.name,
            path=info.path,
        )

    def forbidden_message(self) -> str:
        """Mirrors ``responsewriters.forbiddenMessage`` wrapped by ``NewForbidden``."""
        if not self.resource_request:
            return f'forbidden: User "{self.user}" cannot {self.verb} path "{self.path}"'
        resource = self.resource
        if self.subresource:
            resource += "/" + self.subresource
        if self.namespace:
            why = (
                f'User "{self.user}" cannot {self.verb} resource "{resource}" in API group '
                f'"{self.group}" in the namespace "{self.namespace}"'
            )
        else:
            why = (
                f'User "{self.user}" cannot {self.verb} resource "{resource}" in API group '
                f'"{self.group}" at the cluster scope'
            )
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.name:
            return f'{qualified} "{self.name}" is forbidden: {why}'
        return f"{qualified} is forbidden: {why}"


def _name(user: Obj) -> str:
    return str(user.get("username") or user.get("name") or "")


def _groups(user: Obj) -> tuple[str, ...]:
    return tuple(str(g) for g in user.get("groups") or ())


# --- rule matching (mirrors rbac/v1 helpers) ---------------------------------------------


def verb_matches(rule: Obj, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def group_matches(rule: Obj, group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def resource_matches(rule: Obj, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or []:
        if r == "*" or r == combined:
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def name_matches(rule: Obj, name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def url_matches(rule: Obj, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        return url_matches(rule, attrs.path)
    return (
        group_matches(rule, attrs.group)
        and resource_matches(rule, attrs.resource, attrs.subresource)
        and name_matches(rule, attrs.name)
    )


def subject_matches(subject: Obj, user: str, groups: tuple[str, ...], binding_ns: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return bool(name) and name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user == f"system:serviceaccount:{ns}:{name}"
    return False


# --- the authorizer -----------------------------------------------------------------------


class Snapshot:
    """The RBAC objects at one store revision, indexed for evaluation."""

    def __init__(self, reg: Registry) -> None:
        cat = reg.catalog

        def items(plural: str) -> list[Obj]:
            rt = cat.get(RBAC, "v1", plural)
            return reg.list(rt).items if rt is not None else []

        self.cluster_roles = {o["metadata"]["name"]: o for o in items("clusterroles")}
        self.roles = {
            (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in items("roles")
        }
        self.cluster_bindings = items("clusterrolebindings")
        self.bindings: dict[str, list[Obj]] = {}
        for b in items("rolebindings"):
            self.bindings.setdefault(b["metadata"].get("namespace", ""), []).append(b)
        self._aggregated: dict[str, list[Obj]] = {}
        self._applicable: dict[tuple[str, tuple[str, ...], str], list[tuple[str, Obj, list[Obj]]]]
        self._applicable = {}
        self._uses_names: dict[tuple[str, tuple[str, ...], str], bool] = {}

    def cluster_role_rules(self, name: str, seen: frozenset[str] = frozenset()) -> list[Obj]:
        cached = self._aggregated.get(name)
        if cached is not None:
            return cached
        role = self.cluster_roles.get(name)
        if role is None or name in seen:
            return []
        agg = role.get("aggregationRule")
        # An aggregated role's stored rules are the controller's output: recompute them.
        rules = [] if isinstance(agg, dict) else list(role.get("rules") or [])
        if isinstance(agg, dict):
            for sel in agg.get("clusterRoleSelectors") or []:
                selector = LabelSelector.from_structured(sel)
                for other_name, other in sorted(self.cluster_roles.items()):
                    if other_name == name:
                        continue
                    if selector.matches(other["metadata"].get("labels") or {}):
                        for r in self.cluster_role_rules(other_name, seen | {name}):
                            if r not in rules:
                                rules.append(r)
        self._aggregated[name] = rules
        return rules

    def binding_rules(self, binding: Obj) -> list[Obj]:
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            return self.cluster_role_rules(ref.get("name", ""))
        if ref.get("kind") == "Role":
            ns = binding["metadata"].get("namespace", "")
            role = self.roles.get((ns, ref.get("name", "")))
            return list(role.get("rules") or []) if role else []
        return []

    def applicable(
        self, user: str, groups: tuple[str, ...], namespace: str
    ) -> list[tuple[str, Obj, list[Obj]]]:
        """(description, binding, rules) of every binding that names this user (memoized)."""
        key = (user, groups, namespace)
        found = self._applicable.get(key)
        if found is None:
            found = self._applicable[key] = self._find_applicable(user, groups, namespace)
        return found

    def uses_names(self, user: str, groups: tuple[str, ...], namespace: str) -> bool:
        """Whether any rule applying to this user has ``resourceNames`` (memoized)."""
        key = (user, groups, namespace)
        found = self._uses_names.get(key)
        if found is None:
            found = self._uses_names[key] = any(
                r.get("resourceNames")
                for _, _, rules in self.applicable(user, groups, namespace)
                for r in rules
            )
        return found

    def _find_applicable(
        self, user: str, groups: tuple[str, ...], namespace: str
    ) -> list[tuple[str, Obj, list[Obj]]]:
        out = []
        for b in self.cluster_bindings:
            if any(subject_matches(s, user, groups, "") for s in b.get("subjects") or []):
                out.append(("ClusterRoleBinding", b, self.binding_rules(b)))
        if namespace:
            for b in self.bindings.get(namespace, []):
                ns = b["metadata"].get("namespace", "")
                if any(subject_matches(s, user, groups, ns) for s in b.get("subjects") or []):
                    out.append(("RoleBinding", b, self.binding_rules(b)))
        return out


_PLURALS = ("clusterroles", "roles", "clusterrolebindings", "rolebindings")
_MAX_DECISIONS = 10_000


class RBACAuthorizer:
    """The ``ctx.authorizer`` of an RBAC cluster (see :mod:`microkube.api.app`)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._snapshot: Snapshot | None = None
        self._watchers: list[Any] = []
        self._decisions: dict[tuple[Any, ...], tuple[bool, str]] = {}

    def _changed(self) -> bool:
        """Whether an RBAC object changed since the snapshot (drains the watchers)."""
        changed = False
        for w in self._watchers:
            if w.drain():
                changed = True
            if w.ended:
                changed = True
        return changed

    def snapshot(self) -> Snapshot:
        if self._snapshot is None or self._changed():
            for w in self._watchers:
                w.close()
            store, cat = self.registry.store, self.registry.catalog
            # Watch first, then read: no change can fall between the two.
            prefixes = [rt.prefix() for p in _PLURALS if (rt := cat.get(RBAC, "v1", p))]
            self._watchers = [store.watch(prefix, store.revision) for prefix in prefixes]
            self._snapshot = Snapshot(self.registry)
            self._decisions = {}
        return self._snapshot

    def decide(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason), the reason naming the binding that allowed it."""
        if MASTERS in attrs.groups:
            return True, ""
        snap = self.snapshot()
        a = attrs
        if not a.resource_request:
            key: tuple[Any, ...] = (a.user, a.groups, a.verb, a.path)
        else:
            # No rule of this user naming objects: the decision is the same for every name.
            name = a.name if snap.uses_names(a.user, a.groups, a.namespace) else ""
            key = (a.user, a.groups, a.verb, a.group, a.resource, a.subresource, a.namespace, name)
        cached = self._decisions.get(key)
        if cached is None:
            cached = self._decide(snap, attrs)
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = cached
        return cached

    def _decide(self, snap: Snapshot, attrs: Attributes) -> tuple[bool, str]:
        for what, binding, rules in snap.applicable(attrs.user, attrs.groups, attrs.namespace):
            for rule in rules:
                if rule_allows(rule, attrs):
                    m = binding["metadata"]
                    where = f'"{m["name"]}"'
                    if what == "RoleBinding":
                        where = f'"{m["name"]}/{m.get("namespace", "")}"'
                    ref = binding.get("roleRef") or {}
                    return True, (
                        f"RBAC: allowed by {what} {where} of {ref.get('kind')} "
                        f'"{ref.get("name")}" to User "{attrs.user}"'
                    )
        return False, ""

    def authorize(self, user: Obj, info: RequestInfo) -> None:
        """Raise 403 unless ``user`` may make the request ``info`` describes."""
        attrs = Attributes.from_request(user, info)
        allowed, _ = self.decide(attrs)
        if not allowed:
            raise errors.Forbidden(
                attrs.forbidden_message(),
                name=attrs.name,
                group=attrs.group,
                kind=attrs.resource,
            )

    def review(self, subject: Obj, attrs: Obj, *, resource: bool = True) -> tuple[bool, str]:
        """SubjectAccessReview: ``attrs`` is resourceAttributes or nonResourceAttributes."""
        user, groups = _name(subject), _groups(subject)
        if resource:
            a = Attributes(
                user,
                groups,
                str(attrs.get("verb", "")),
                True,
                group=str(attrs.get("group", "")),
                resource=str(attrs.get("resource", "")),
                subresource=str(attrs.get("subresource", "")),
                namespace=str(attrs.get("namespace", "")),
                name=str(attrs.get("name", "")),
            )
        else:
            a = Attributes(
                user, groups, str(attrs.get("verb", "")), False, path=str(attrs.get("path", ""))
            )
        return self.decide(a)

    def rules_for(self, user: Obj, namespace: str) -> tuple[list[Obj], list[Obj]]:
        """SelfSubjectRulesReview: (resourceRules, nonResourceRules) in ``namespace``."""
        resource_rules: list[Obj] = []
        url_rules: list[Obj] = []
        snap = self.snapshot()
        for _, _, rules in snap.applicable(_name(user), _groups(user), namespace):
            for rule in rules:
                if rule.get("nonResourceURLs"):
                    entry = {
                        "verbs": rule.get("verbs") or [],
                        "nonResourceURLs": rule["nonResourceURLs"],
                    }
                    if entry not in url_rules:
                        url_rules.append(entry)
                    continue
                entry = {
                    "verbs": rule.get("verbs") or [],
                    "apiGroups": rule.get("apiGroups") or [],
                    "resources": rule.get("resources") or [],
                }
                if rule.get("resourceNames"):
                    entry["resourceNames"] = rule["resourceNames"]
                if entry not in resource_rules:
                    resource_rules.append(entry)
        return resource_rules, url_rules


class AlwaysAllow:
    """``--authorization AlwaysAllow``: every authenticated request may do anything."""

    def authorize(self, user: Obj, info: RequestInfo) -> None:
        return None

    def review(self, subject: Obj, attrs: Obj, *, resource: bool = True) -> tuple[bool, str]:
        return True, ""

    def rules_for(self, user: Obj, namespace: str) -> tuple[list[Obj], list[Obj]]:
        return (
            [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        )


def authorizer_for(mode: str, registry: Registry) -> RBACAuthorizer | AlwaysAllow:
    """The authorizer of ``settings.api.authorization`` ("RBAC" or "AlwaysAllow")."""
    if mode == "AlwaysAllow":
        return AlwaysAllow()
    if mode != "RBAC":
        raise ValueError(f"unknown authorization mode {mode!r}")
    return RBACAuthorizer(registry)
