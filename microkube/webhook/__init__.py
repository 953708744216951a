"""Calling out to webhooks: admission webhooks, CRD conversion webhooks, others.

Mirrors ``k8s.io/apiserver/pkg/util/webhook``: a ``WebhookClientConfig``
(``url``, or ``service`` namespace/name/port/path, plus ``caBundle``) becomes
an HTTPS POST of a JSON body that returns a JSON body::

    clientConfig ─► resolve.Target (URL shown in errors, address dialled,
                    │                 TLS server name <svc>.<ns>.svc)
                    ▼
    client.WebhookClient.post ─► transport.Pool (asyncio streams, kept alive)

Nothing here blocks the event loop; every call is bounded by its timeout.
Failures raise :class:`client.CallError` whose message is upstream's
``failed to call webhook: …`` text, for the caller to wrap with the webhook
name.
"""
