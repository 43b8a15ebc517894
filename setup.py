"""Build owncastd and its Cython extensions over FFmpeg's libraries.

Every ``native/*.pyx`` becomes ``owncastd.native.<name>``, compiled against the
libav* libraries that pkg-config reports (Debian 12: FFmpeg 5.1).
"""
import glob
import os
import shlex
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

LIBAV = ["libavcodec", "libavformat", "libswscale", "libavutil", "libswresample"]


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, *LIBAV], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            "pkg-config could not find FFmpeg's development files "
            f"({', '.join(LIBAV)}): {exc}. On Debian: apt-get install pkg-config "
            "libavcodec-dev libavformat-dev libswscale-dev libavutil-dev libswresample-dev"
        )
    return shlex.split(out)


def extensions():
    cflags = pkg_config("--cflags")
    libs = pkg_config("--libs")
    exts = []
    for pyx in sorted(glob.glob("native/*.pyx")):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(Extension(
            f"owncastd.native.{name}",
            [pyx],
            include_dirs=[f[2:] for f in cflags if f.startswith("-I")] + ["native"],
            extra_compile_args=[f for f in cflags if not f.startswith("-I")] + ["-O2"],
            library_dirs=[f[2:] for f in libs if f.startswith("-L")],
            libraries=[f[2:] for f in libs if f.startswith("-l")],
        ))
    return cythonize(exts, language_level=3, include_path=["native"],
                     compiler_directives={"boundscheck": False, "wraparound": False})


def version():
    ns = {}
    with open("owncastd/version.py") as f:
        exec(f.read(), ns)
    return ns["__version__"]


setup(
    name="owncastd",
    version=version(),
    description="Self-hosted live video and web chat server speaking the Owncast API",
    packages=find_packages(include=["owncastd", "owncastd.*"]),
    package_data={"owncastd": ["assets/*", "assets/*/*", "assets/*/*/*", "assets/*/*/*/*", "openapi.yaml", "native/*.pyi"]},
    include_package_data=True,
    ext_modules=extensions(),
    python_requires=">=3.11",
    install_requires=[
        "falcon>=4,<5",
        "gunicorn[gevent]>=23",
        "gevent>=24",
        "gevent-websocket>=0.10.1",
        "pyzmq>=25",
        "click>=8.1",
        "psutil>=5.9",
        "boto3>=1.28",
        "markdown-it-py>=3",
        "nh3>=0.2.14",
        "maxminddb>=2.4",
        "linkify-it-py>=2",
        "prometheus-client>=0.17",
        # PostgreSQL store (store_url = postgresql://...; imported only then). The pure-Python
        # psycopg uses the system's libpq (Debian: libpq5).
        "psycopg>=3.1",
        "psycopg-pool>=3.2",
        "redis>=5",   # the bridge between nodes (redis_url; imported only then)
    ],
    entry_points={
        "console_scripts": [
            "owncastd=owncastd.cli:main",
            "owncastctl=owncastd.ctl:run",
        ],
    },
)
