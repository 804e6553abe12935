#!/usr/bin/env python3
"""Checks abexp's Debian packages (scripts/package.sh) from the outside.

How: the packages are unpacked with `dpkg-deb -x` into a temporary root and
their metadata read with `dpkg-deb`, rather than installed into a
debootstrap'ed Debian 12: that needs root, the network and minutes of a CI
budget that is tight (2 cores, 60 minutes for everything), while what it
would show is checked here directly:
  - every library the installed binaries need (their ELF NEEDED entries)
    belongs to a Debian package that the abexp package's Depends names, so
    an install pulls in all of them;
  - the installed abexp-server and abexp run (--version) and the server
    starts on the installed default config, which serves no experiments;
  - the maintainer scripts run, with the commands they call recorded by
    stand-ins on PATH (so no user is created on this machine);
  - files land where the README's "Install" section says, and the -dev
    package holds only public headers, each compiling on its own against
    nothing but the installed include tree and the system.

Usage: deb_package_test.py contents --debs DIR --version V --revision R --cxx C
       deb_package_test.py systemd-unit --debs DIR --version V
The second runs `systemd-analyze verify` on the unit; without systemd-analyze
it says why and exits 77, which ctest reports as skipped (and
scripts/test.sh as a failure).
"""

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
        print("FAIL: " + message, file=sys.stderr)
    return ok


def run(argv, **kwargs):
    kwargs.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def one_deb(debs, name, version):
    found = glob.glob(os.path.join(debs, "%s_%s_*.deb" % (name, version)))
    if len(found) != 1:
        sys.exit("want one %s_%s_*.deb in %s (the package_build test, "
                 "scripts/package.sh, makes it), found %s"
                 % (name, version, debs, found))
    return found[0]


def field(deb, name):
    return run(["dpkg-deb", "-f", deb, name]).stdout.strip()


def extract(deb, root):
    out = run(["dpkg-deb", "-x", deb, root])
    if out.returncode != 0:
        sys.exit("dpkg-deb -x %s failed: %s" % (deb, out.stderr))


def files_under(root):
    result = set()
    for d, _, names in os.walk(root):
        for n in names:
            result.add(os.path.relpath(os.path.join(d, n), root))
    return result


def depends_packages(depends):
    """Package names in a Depends field ("a (>= 1), b | c" -> {a, b, c})."""
    names = set()
    for clause in depends.split(","):
        for alt in clause.split("|"):
            alt = alt.strip()
            if alt:
                names.add(re.split(r"[\s(:]", alt, maxsplit=1)[0])
    return names


def owning_package(path):
    """The Debian package that ships `path`, trying the merged-/usr aliases."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/"):
            candidates.append(p[len("/usr"):])
        else:
            candidates.append("/usr" + p)
    for p in candidates:
        out = run(["dpkg", "-S", p])
        if out.returncode == 0:
            return out.stdout.split(":")[0].strip()
    return None


def check_metadata(server_deb, dev_deb, version):
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    for deb, name in ((server_deb, "abexp"), (dev_deb, "abexp-dev")):
        check(field(deb, "Package") == name, "%s: Package is %r"
              % (deb, field(deb, "Package")))
        check(field(deb, "Version") == version,
              "%s: Version %r, want CMake's project version %s"
              % (deb, field(deb, "Version"), version))
        check(field(deb, "Architecture") == arch, "%s: Architecture %r, want %s"
              % (deb, field(deb, "Architecture"), arch))
        check(field(deb, "Maintainer") != "", deb + ": no Maintainer")
        description = field(deb, "Description")
        check("built using CMake" not in description
              and all(l.startswith(" ") and not l.startswith("  ")
                      for l in description.splitlines()[1:]),
              "%s: Description is CPack's default or its long lines are not "
              "indented by one space (two mean verbatim): %r"
              % (deb, description))
    depends = field(server_deb, "Depends")
    # dpkg-shlibdeps ran: the C library with a minimum version, and passwd
    # (useradd in postinst).
    check(re.search(r"\blibc6 \(>= [0-9.]+\)", depends) is not None,
          "abexp Depends %r lacks libc6 (>= ...): did dpkg-shlibdeps run?"
          % depends)
    check("passwd" in depends_packages(depends),
          "abexp Depends %r lacks passwd (postinst runs useradd)" % depends)
    dev_depends = depends_packages(field(dev_deb, "Depends"))
    for need in ("libgrpc++-dev", "libprotobuf-dev", "libabsl-dev",
                 "libssl-dev"):
        check(need in dev_depends, "abexp-dev Depends lacks " + need)


def check_layout(root, dev_root):
    want = {
        "usr/bin/abexp-server", "usr/bin/abexp",
        "lib/systemd/system/abexp-server.service",
        "etc/abexp/experiments.yaml", "etc/default/abexp-server",
        "usr/share/doc/abexp/README.md",
        "usr/share/doc/abexp/examples/experiments.yaml",
    }
    have = files_under(root)
    for f in sorted(want - have):
        check(False, "abexp package lacks /" + f)
    for f in ("usr/bin/abexp-server", "usr/bin/abexp"):
        check(os.access(os.path.join(root, f), os.X_OK), f + " not executable")
    for top in sorted(os.listdir(root)):
        check(top in ("etc", "lib", "usr"),
              "abexp package installs into unexpected /" + top)

    dev = files_under(dev_root)
    headers = {f for f in dev if f.startswith("usr/include/")}
    want_headers = {"usr/include/abexp/client/%s.h" % h
                    for h in ("client", "credentials", "event_sender", "token")}
    for p in ("assignment", "recording", "results"):
        want_headers |= {"usr/include/abexp/v1/%s%s" % (p, ext)
                         for ext in (".pb.h", ".grpc.pb.h", ".proto")}
    check(headers == want_headers,
          "abexp-dev headers differ from the public ones: extra %s, missing %s"
          % (sorted(headers - want_headers), sorted(want_headers - headers)))
    libdir = None
    for f in dev:
        if f.endswith("/libabexp_client.a"):
            libdir = os.path.dirname(f)
    check(libdir is not None, "abexp-dev lacks libabexp_client.a")
    if libdir:
        for f in ("libabexp_proto.a", "cmake/abexp/abexpConfig.cmake",
                  "cmake/abexp/abexpConfigVersion.cmake",
                  "cmake/abexp/abexpTargets.cmake",
                  "pkgconfig/abexp-client.pc"):
            check(os.path.join(libdir, f) in dev, "abexp-dev lacks %s/%s"
                  % (libdir, f))
    return sorted(h for h in headers if h.endswith(".h"))


def check_headers_alone(dev_root, headers, cxx):
    """Each public header compiles with only the installed include tree."""
    include = os.path.join(dev_root, "usr/include")
    for h in headers:
        if not h.startswith("usr/include/abexp/client/"):
            continue  # the generated ones are compiled through client.h
        out = run([cxx, "-std=c++17", "-fsyntax-only", "-I", include,
                   "-I", os.path.join(include, "abexp"), "-x", "c++",
                   os.path.join(dev_root, h)], timeout=240)
        check(out.returncode == 0,
              "/%s does not compile on its own against the installed headers "
              "(does it include a private one?):\n%s" % (h, out.stderr[-3000:]))


def check_dependencies(root, depends):
    """Every NEEDED library of the binaries is in a package Depends names."""
    allowed = depends_packages(depends)
    for binary in ("usr/bin/abexp-server", "usr/bin/abexp"):
        path = os.path.join(root, binary)
        dynamic = run(["readelf", "-d", path]).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            dynamic)
        check(needed, binary + ": readelf shows no NEEDED libraries")
        ldd = run(["ldd", path]).stdout
        resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
        # The dynamic loader is listed by its path alone.
        for loader in re.findall(r"^\s*(/\S+) \(", ldd, re.M):
            resolved[os.path.basename(loader)] = loader
        for lib in needed:
            if not check(lib in resolved, "%s needs %s, which ldd does not "
                         "resolve:\n%s" % (binary, lib, ldd)):
                continue
            package = owning_package(resolved[lib])
            check(package is not None and package in allowed,
                  "%s needs %s (%s, from package %s), which abexp's Depends "
                  "%r does not name" % (binary, lib, resolved[lib], package,
                                        depends))


def expected_revision(args):
    """The revision --version must print: the one the build was given, else
    the source's git HEAD now (so a binary built before the last commit
    fails), else (no git, or not a repository) "unknown"."""
    if args.revision:
        return args.revision
    if args.source and shutil.which("git"):
        out = subprocess.run(["git", "-C", args.source, "rev-parse",
                              "--short=12", "HEAD"], capture_output=True,
                             text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    # No git on the machine, or no repository: the build could not ask
    # either (cmake/git_revision.cmake), so the binaries say "unknown".
    return "unknown"


def check_binaries_run(root, version, revision, tmp):
    for name in ("abexp-server", "abexp"):
        out = run([os.path.join(root, "usr/bin", name), "--version"])
        want = "%s %s (git %s)\n" % (name, version, revision)
        check(out.returncode == 0 and out.stdout == want,
              "installed %s --version: exit %d, printed %r, want %r; stderr %s"
              % (name, out.returncode, out.stdout, want, out.stderr))
    config = os.path.join(root, "etc/abexp/experiments.yaml")
    out = run([os.path.join(root, "usr/bin/abexp"), "validate", config])
    check(out.returncode == 0, "the installed default config does not "
          "validate: %s%s" % (out.stdout, out.stderr))

    # The installed server starts on the installed config (no Redis needed:
    # it answers assignments without one) and serves no experiment.
    server = subprocess.Popen(
        [os.path.join(root, "usr/bin/abexp-server"), "--config=" + config,
         "--listen=127.0.0.1:0", "--redis=127.0.0.1:%d" % unused_port(),
         "--spool_dir=" + os.path.join(tmp, "spool")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        m = re.match(r"abexp-server listening on (\S+) ", line)
        if m is None:
            check(False, "installed abexp-server did not start: %r; stderr: %s"
                  % (line, read_rest(server)))
            return
        listed = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = run([os.path.join(root, "usr/bin/abexp"), "experiments",
                          "list", "--server", m.group(1), "--format", "json"])
            if listed.returncode == 0:
                break
            time.sleep(0.2)
        if not check(listed.returncode == 0 and '"key"' not in listed.stdout,
                     "abexp experiments list against the installed server on "
                     "the default config: exit %d, %s%s"
                     % (listed.returncode, listed.stdout, listed.stderr)):
            print("abexp-server's stderr: " + read_rest(server),
                  file=sys.stderr)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_rest(process):
    process.kill()
    return process.communicate(timeout=30)[1][-3000:]


def check_maintainer_scripts(server_deb, tmp):
    control = os.path.join(tmp, "control")
    run(["dpkg-deb", "-e", server_deb, control])
    with open(os.path.join(control, "conffiles")) as f:
        conffiles = sorted(f.read().split())
    check(conffiles == ["/etc/abexp/experiments.yaml",
                        "/etc/default/abexp-server"],
          "conffiles are %s" % conffiles)
    for script in ("postinst", "prerm", "postrm"):
        path = os.path.join(control, script)
        if not check(os.access(path, os.X_OK), script + " missing or not "
                     "executable"):
            continue
        out = run(["sh", "-n", path])
        check(out.returncode == 0, "%s: %s" % (script, out.stderr))

    # postinst with stand-ins for the commands that change the system: each
    # logs its arguments; getent answers as if the user did (not) exist.
    for user_exists in (False, True):
        shims = os.path.join(tmp, "shims-%s" % user_exists)
        os.makedirs(shims)
        log = os.path.join(shims, "log")
        for cmd in ("useradd", "install", "systemctl", "getent"):
            rc = 0 if (cmd != "getent" or user_exists) else 2
            with open(os.path.join(shims, cmd), "w") as f:
                f.write('#!/bin/sh\necho "%s $*" >> "%s"\nexit %d\n'
                        % (cmd, log, rc))
            os.chmod(os.path.join(shims, cmd), 0o755)
        env = dict(os.environ, PATH=shims + ":" + os.environ["PATH"])
        out = run(["sh", os.path.join(control, "postinst"), "configure", ""],
                  env=env)
        check(out.returncode == 0, "postinst configure failed: " + out.stderr)
        calls = open(log).read() if os.path.exists(log) else ""
        useradd = re.search(r"^useradd .*--system.* abexp$", calls, re.M)
        if user_exists:
            check(useradd is None and "useradd" not in calls,
                  "postinst adds the abexp user although it exists:\n" + calls)
        else:
            check(useradd is not None and "--shell /usr/sbin/nologin" in calls,
                  "postinst does not add a system user abexp without a "
                  "login shell:\n" + calls)
        check(re.search(r"^install -d -o abexp -g abexp -m 0750 .*"
                        r"/var/lib/abexp/spool", calls, re.M) is not None,
              "postinst does not make /var/lib/abexp/spool for abexp:\n"
              + calls)


def contents(args):
    server_deb = one_deb(args.debs, "abexp", args.version)
    dev_deb = one_deb(args.debs, "abexp-dev", args.version)
    tmp = tempfile.mkdtemp(prefix="abexp-deb-test.")
    try:
        root = os.path.join(tmp, "root")
        dev_root = os.path.join(tmp, "dev-root")
        extract(server_deb, root)
        extract(dev_deb, dev_root)
        check_metadata(server_deb, dev_deb, args.version)
        check_maintainer_scripts(server_deb, tmp)
        headers = check_layout(root, dev_root)
        check_dependencies(root, field(server_deb, "Depends"))
        check_binaries_run(root, args.version, expected_revision(args), tmp)
        check_headers_alone(dev_root, headers, args.cxx)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def systemd_unit(args):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("SKIPPED: systemd-analyze is not installed, so the unit "
              "abexp-server.service was not verified; install Debian's "
              "systemd package (scripts/install-deps.sh does)")
        return 77
    server_deb = one_deb(args.debs, "abexp", args.version)
    tmp = tempfile.mkdtemp(prefix="abexp-unit-test.")
    try:
        root = os.path.join(tmp, "root")
        extract(server_deb, root)
        unit = os.path.join(root, "lib/systemd/system/abexp-server.service")
        # --root resolves ExecStart's /usr/bin/abexp-server in the unpacked
        # package. What the unit uses from an installed system is copied in
        # from this one: systemd's targets (its default dependencies) and
        # ExecReload's /bin/kill (procps).
        units = os.path.join(root, "lib/systemd/system")
        for target in glob.glob("/lib/systemd/system/*.target"):
            if not os.path.exists(os.path.join(units, os.path.basename(target))):
                shutil.copy(target, units)
        os.makedirs(os.path.join(root, "bin"), exist_ok=True)
        shutil.copy("/bin/kill", os.path.join(root, "bin/kill"))
        out = run([analyze, "verify", "--root=" + root, unit])
        report = [l for l in (out.stdout + out.stderr).splitlines()
                  if l.strip()]
        problems = [l for l in report if "abexp" in l]
        check(out.returncode == 0 and not problems,
              "systemd-analyze verify abexp-server.service: exit %d\n%s"
              % (out.returncode, "\n".join(report)))
        print("systemd-analyze verify: %s" % ("\n".join(report) or "clean"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["contents", "systemd-unit"])
    parser.add_argument("--debs", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--source", default="",
                        help="the source tree: the revision the binaries "
                        "print is its git HEAD, asked here")
    parser.add_argument("--revision", default="",
                        help="the revision the build was told to print "
                        "(-DABEXP_GIT_REVISION); empty: git's")
    parser.add_argument("--cxx", default="c++")
    args = parser.parse_args()
    rc = contents(args) if args.what == "contents" else systemd_unit(args)
    if rc:
        return rc
    if failures:
        print("%d problems" % len(failures), file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
