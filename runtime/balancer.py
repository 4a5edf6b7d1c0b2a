"""nginx as the load balancer of several nodes: the configuration docs/operations.md explains, and
one nginx process run unprivileged with every file it writes under one directory (the cluster
harness, the tests' fronts).

Why each setting (docs/operations.md has the long form):
- round-robin over the nodes: any node answers any request (everything shared is in MongoDB);
- ``max_fails=1 fail_timeout=2s``: a node that refused or dropped a connection is skipped for 2 s;
- ``proxy_next_upstream error timeout``: a request is passed to the next node when its node refuses
  the connection (always safe: nothing was sent) or fails before answering, which nginx does only
  for a request it can send again: not a POST or PATCH once sent, nor any request whose body it
  streamed (``proxy_request_buffering off``);
- upstream keep-alive (HTTP/1.1, ``Connection ""``) with ``keepalive_timeout`` below the nodes'
  ``shutdown_idle_seconds``: nginx always closes an idle connection before a stopping node would,
  so no request is sent on a connection as it closes;
- blob requests stream both ways (``proxy_request_buffering off``, ``proxy_buffering off``) with
  no size limit and long timeouts; everything else is buffered (small bodies, resent on failure);
- ``Host`` with the balancer's port and ``X-Forwarded-*``: the nodes (``trust_proxy_headers``)
  name the balancer in the token realm, and log the client's address.
"""
import grp
import os
import pwd
from pathlib import Path

NGINX = "/usr/sbin/nginx"
UPSTREAM = "cyp_registry"
# Below the nodes' shutdown_idle_seconds (default 5).
UPSTREAM_KEEPALIVE_SECONDS = 3
# What a client gets when the node streaming its upload dies: the upload cannot go on as sent, and clients start
# it again on a registry error of this kind (docker and skopeo end a push on a bare 502, and skopeo 1.9 on a
# connection closed while it writes).
UPLOAD_LOST = ('{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"the node receiving this upload was lost; '
               'start the upload again","detail":{}}]}')


def user_directive():
    """As root nginx would switch to nobody; keep it the current user (elsewhere the directive is ignored)."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def nginx_config(workdir, servers, worker_connections=512):
    """A whole nginx.conf for one foreground, single-process nginx whose every file is under ``workdir`` (with no
    master process there is no worker to be orphaned when it is killed); ``servers``: its http-level blocks."""
    workdir = Path(workdir)
    temp = workdir / "temp"
    return f"""\
{user_directive()}
daemon off;
master_process off;
worker_processes 1;
pid "{workdir}/nginx.pid";
error_log "{workdir}/error.log" info;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log "{workdir}/access.log";
    client_body_temp_path "{temp}/client_body";
    proxy_temp_path "{temp}/proxy";
    fastcgi_temp_path "{temp}/fastcgi";
    uwsgi_temp_path "{temp}/uwsgi";
    scgi_temp_path "{temp}/scgi";
{servers}
}}
"""


def nginx_command(workdir, config_path):
    """The command line running ``config_path`` with ``workdir`` as nginx's prefix (nothing under /etc or /var)."""
    return [NGINX, "-p", f"{workdir}/", "-c", str(config_path), "-e", str(Path(workdir) / "error.log")]


def balancer_blocks(listen, nodes, host_header="$http_host", client_address="$remote_addr"):
    """The upstream and server blocks of a balancer on ``listen`` (``host:port``) over ``nodes`` (``host:port``
    each). ``host_header``: what the nodes get as Host (``$http_host`` keeps the port clients used; with ``$host``,
    which drops it, the nodes need ``public_url``); ``client_address``: the X-Real-IP they get."""
    servers = "\n".join(f"        server {node} max_fails=1 fail_timeout=2s;" for node in nodes)
    return f"""\
    upstream {UPSTREAM} {{
{servers}
        keepalive 64;
        keepalive_timeout {UPSTREAM_KEEPALIVE_SECONDS}s;
    }}
    server {{
        listen {listen};
        client_max_body_size 0;
        client_body_timeout 900s;
        send_timeout 900s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {host_header};
        proxy_set_header X-Real-IP {client_address};
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 5s;
        proxy_send_timeout 900s;
        proxy_read_timeout 900s;
        proxy_next_upstream error timeout;
        location ~ ^/v2/.+/blobs/uploads/ {{
            proxy_pass http://{UPSTREAM};
            proxy_request_buffering off;
            proxy_buffering off;
            error_page 502 504 = @upload_lost;
        }}
        location ~ ^/v2/.+/blobs/ {{
            proxy_pass http://{UPSTREAM};
            proxy_buffering off;
            error_page 502 504 = @node_lost;
        }}
        location @upload_lost {{
            default_type application/json;
            return 400 '{UPLOAD_LOST}';
        }}
        location @node_lost {{
            return 444;
        }}
        location / {{
            proxy_pass http://{UPSTREAM};
        }}
    }}"""
