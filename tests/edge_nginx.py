"""contrib/nginx/edge.conf run by a real nginx for tests and benchmarks, with only addresses
and paths replaced."""
from __future__ import annotations

import getpass
import os
import subprocess

import requests

from conftest import free_port, wait_until

EDGE_CONF = os.path.join(os.path.dirname(__file__), "..", "contrib", "nginx", "edge.conf")


class EdgeNginx:
    """nginx running contrib/nginx/edge.conf with only addresses and paths replaced."""

    def __init__(self, root: str, web, origin):   # conftest.Daemon: the web node, the origin
        self.dir = os.path.join(root, "nginx")
        os.makedirs(os.path.join(self.dir, "cache"))
        self.port = free_port()
        with open(EDGE_CONF) as f:
            site = f.read()
        for old, new in (("127.0.0.1:8080", f"127.0.0.1:{web.web_port}"),
                         ("origin.internal:8080", f"127.0.0.1:{origin.web_port}"),
                         ("/var/cache/nginx/owncastd-edge", os.path.join(self.dir, "cache")),
                         ("listen 80;", f"listen 127.0.0.1:{self.port};")):
            assert old in site, old
            site = site.replace(old, new)
        with open(os.path.join(self.dir, "edge.conf"), "w") as f:
            f.write(site)
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""{user}
worker_processes 1;
daemon off;
error_log {self.dir}/error.log;
pid {self.dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    include {self.dir}/edge.conf;
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", self.dir + "/", "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until(lambda: requests.get(self.url + "/api/status", timeout=1).ok, 10,
                   what="nginx to answer")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
