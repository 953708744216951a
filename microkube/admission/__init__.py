"""The admission chain: ordered plugins, mutating then validating.

Mirrors ``k8s.io/apiserver/pkg/admission``.  Every write the
:class:`~microkube.resources.registry.Registry` makes (HTTP handlers and
in-process controllers share it) is described once by an
:class:`~microkube.admission.attributes.Attributes` and handed to the
:class:`~microkube.admission.chain.Chain` at upstream's two points::

    decode ─► default ─► Chain.mutate ─► prepare/validate ─► Chain.validate ─► store
                             │                                   │
                  built-ins, then mutating webhooks      built-ins, VAP, validating webhooks

DELETE runs both phases with the stored object as ``old_object``; CONNECT
(exec, attach, port-forward, proxy) runs both with the connect options.

Layers: :mod:`attributes` and :mod:`chain` know no kinds; :mod:`matching`
is the pure rule/selector matching shared by dynamic plugins; the webhook
plugins live in :mod:`microkube.admission.webhooks`.
"""
