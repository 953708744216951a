"""Streaming subresources: pods/exec, pods/attach and pods/portforward.

How the bytes travel, by client::

    kubectl ≥ 1.30 exec/attach   WebSocket, subprotocol v5.channel.k8s.io   channels.py
    Python client exec           WebSocket, v4.channel.k8s.io               channels.py
    kubectl ≤ 1.29 exec/attach   POST + Upgrade: SPDY/3.1                    upgrade.py → spdyconn.py
    kubectl ≥ 1.31 port-forward  WebSocket, SPDY/3.1+portforward.k8s.io     spdyconn.py in messages
    kubectl port-forward         POST + Upgrade: SPDY/3.1                    upgrade.py → spdyconn.py

* ``spdy.py``: SPDY/3 frame codec (pure; zlib header compression with the SPDY dictionary);
* ``spdyconn.py``: the server side of a SPDY connection over any byte pipe;
* ``channels.py``: the WebSocket channel framing (pure);
* ``remotecommand.py``: drives an exec/attach :class:`~remotecommand.ExecSession` over either;
* ``portforward.py``: pairs error/data streams and pipes them to the pod's port;
* ``upgrade.py``: lets uvicorn hand a SPDY upgrade to a Starlette endpoint.

Wiring (the API server)::

    config = uvicorn.Config(app, **upgrade.uvicorn_options(), ssl_certfile=..., ssl_keyfile=...)

    # http routes (GET and POST) for …/exec, …/attach, …/portforward:
    if not upgrade.is_spdy_upgrade(request.scope): raise BadRequest("upgrade request required")
    return remotecommand.spdy_response(session, stdin=…, stdout=…, stderr=…, tty=…)
    return portforward.spdy_response(connect)
    # WebSocket routes on the same paths:
    await remotecommand.serve_remotecommand_ws(websocket, session, stdin=…, stdout=…, stderr=…, tty=…)
    await portforward.serve_portforward_ws(websocket, connect)

The API layer resolves the pod and container (and authorizes) before calling in here;
these modules know nothing of pods.
"""
