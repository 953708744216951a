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

The API layer resolves the pod and container (and authorizes) before calling in here;
these modules know nothing of pods.
"""
