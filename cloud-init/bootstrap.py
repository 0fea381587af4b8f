#!/usr/bin/python3
# plumb-bootstrap: gets plumb-agent onto a new droplet without any host but the controller.
#
# Started by cloud-init's bootcmd (its first stage with a network), before any package is
# installed: python3 and openssl are on every Debian image. It makes the agent's TLS identity
# exactly as the agent would (so the controller's pin never changes), serves the agent's port,
# and waits for the agent package: PUT by the controller (which proves it holds the enrolment
# secret) or, with --agent-url, downloaded from that mirror. Either way the package must have the
# size and sha512 the controller wrote into user-data. Meanwhile it tells the controller how
# cloud-init is doing, so a droplet that cannot get going is reported at once. Once the package is
# installed and cloud-init has installed node, it hands the port to the agent and exits.
# Standard library only; every command with an argument list.
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request

CONFIG = '/etc/plumb-agent/config.json'
PACKAGE = '/etc/plumb-agent/package.json'
TLS_DIR = '/var/lib/plumb/tls'
AGENT_ROOT = '/opt/plumb-agent'
AGENT_LINK = '/usr/local/bin/plumb-agent'
BUNDLE = 'bundle/plumb-agent.mjs'
NODE = '/usr/bin/node'
CLOUD_INIT_STATUS = '/run/cloud-init/status.json'
CLOUD_INIT_RESULT = '/run/cloud-init/result.json'
CLOUD_INIT_OUTPUT = '/var/log/cloud-init-output.log'
STAGES = ('init-local', 'init', 'modules-config', 'modules-final')
OUTPUT_LINES = 30
OUTPUT_TAIL_BYTES = 16384
PROOF_HEADER = 'x-plumb-proof'
CONTROLLER_PROOF_PREFIX = b'plumb-controller '
STATUS_PATH = '/v1/bootstrap'
PACKAGE_PATH = '/v1/bootstrap/package'
SOCKET_TIMEOUT_S = 30
CHUNK = 65536
DOWNLOAD_ATTEMPTS = 10
POLL_S = 0.5
# apt's own words for a download that failed; a droplet whose mirror stays unreachable this long is
# reported instead of waited for (apt's retries take minutes before cloud-init calls it an error).
APT_FAILURE = re.compile(r'^(Err:\d+ .*|W: Failed to fetch .*|E: .*)$')
APT_FAILURE_GRACE_S = 30


def log(message):
    print(f'plumb-bootstrap: {message}', file=sys.stderr, flush=True)


def read_json(path, key):
    """The file's JSON once it has `key`: cloud-init's write_files runs just after bootcmd."""
    while True:
        try:
            with open(path, encoding='utf-8') as f:
                value = json.load(f)
            if key in value:
                return value
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


def identity():
    """The agent's key and certificate (packages/agent/src/identity.ts): same command, same files."""
    key, cert = f'{TLS_DIR}/agent.key', f'{TLS_DIR}/agent.crt'
    if not os.path.exists(cert):
        os.makedirs(TLS_DIR, mode=0o700, exist_ok=True)
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
             '-keyout', f'{key}.new', '-out', f'{cert}.new', '-days', '3650', '-subj', '/CN=plumb-agent'],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(f'{key}.new', key)
        os.rename(f'{cert}.new', cert)
    with open(cert, encoding='ascii') as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return key, cert, hashlib.sha256(der).hexdigest()


def cloud_init():
    """cloud-init's progress from its own status file (running `cloud-init status` costs a second)."""
    try:
        with open(CLOUD_INIT_STATUS, encoding='utf-8') as f:
            v1 = json.load(f)['v1']
    except (OSError, ValueError, KeyError):
        return {'status': 'running', 'stage': None, 'errors': []}
    started = [s for s in STAGES if (v1.get(s) or {}).get('start')]
    errors = [str(e) for s in STAGES for e in ((v1.get(s) or {}).get('errors') or [])]
    finished = os.path.exists(CLOUD_INIT_RESULT)
    status = ('error' if errors else 'done') if finished else 'running'
    return {'status': status, 'stage': v1.get('stage') or (started[-1] if started else None), 'errors': errors}


def output_lines(tail_bytes=OUTPUT_TAIL_BYTES):
    try:
        with open(CLOUD_INIT_OUTPUT, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            return f.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        return []


def output_tail():
    return output_lines()[-OUTPUT_LINES:]


def apt_failure():
    """apt's first failed download in cloud-init's output, with the reason on the line after it."""
    lines = output_lines(4 * OUTPUT_TAIL_BYTES)
    for i, line in enumerate(lines):
        if APT_FAILURE.match(line):
            reason = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith(' ') else ''
            return f'{line.strip()}{": " + reason if reason else ""}'
    return None


class Bootstrap:
    def __init__(self, secret, package, fingerprint):
        self.secret = secret
        self.package = package
        self.fingerprint = fingerprint
        self.stage = 'waiting-for-package'
        self.error = None
        self.lock = threading.Lock()
        self.installed = threading.Event()

    def proof(self, message):
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def controller_proven(self, header):
        expected = self.proof(CONTROLLER_PROOF_PREFIX + self.fingerprint.encode('ascii'))
        return hmac.compare_digest(expected, header or '')

    def status(self):
        return {'stage': self.stage, 'error': self.error, 'fingerprint': self.fingerprint,
                'proof': self.proof(self.fingerprint.encode('ascii')), 'cloudInit': cloud_init(), 'output': output_tail()}

    def fail(self, message):
        log(message)
        self.error = message
        self.stage = 'failed'

    def receive(self, stream, length):
        """Checks and installs a package of `length` bytes from `stream`; returns the refusal or None."""
        if not self.lock.acquire(blocking=False):
            return 'another package is being received'
        try:
            if self.installed.is_set():
                return None
            if length != self.package['bytes']:
                return f'the package must be {self.package["bytes"]} bytes, not {length}'
            return self.install(stream, length)
        finally:
            self.lock.release()

    def install(self, stream, length):
        version = self.package['version']
        versions = f'{AGENT_ROOT}/versions'
        target = f'{versions}/{version}'
        work = f'{target}.new'
        os.makedirs(versions, mode=0o755, exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work, mode=0o755)
        tarball = f'{work}.tgz'
        digest = hashlib.sha512()
        left = length
        with open(tarball, 'wb') as f:
            while left > 0:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    break
                digest.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        if left > 0:
            os.unlink(tarball)
            return f'the package ended {left} bytes short'
        if not hmac.compare_digest(digest.hexdigest(), self.package['sha512']):
            os.unlink(tarball)
            return 'the package does not match the sha512 in user-data: not installed'
        self.stage = 'installing'
        with tarfile.open(tarball, 'r:gz') as tar:
            # npm's tarballs hold everything under package/; the data filter refuses links out,
            # absolute paths, devices and set-id bits.
            members = [m for m in tar.getmembers() if m.name.startswith('package/')]
            for m in members:
                m.name = m.name[len('package/'):]
            tar.extractall(work, members=[m for m in members if m.name], filter='data')
        os.unlink(tarball)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(work, target)
        # The layout `plumb upgrade` switches between: versions side by side, `current` renamed over.
        os.symlink(f'versions/{version}', f'{AGENT_ROOT}/current.new')
        os.rename(f'{AGENT_ROOT}/current.new', f'{AGENT_ROOT}/current')
        os.makedirs(os.path.dirname(AGENT_LINK), exist_ok=True)
        if os.path.lexists(AGENT_LINK):
            os.unlink(AGENT_LINK)
        os.symlink(f'{AGENT_ROOT}/current/{BUNDLE}', AGENT_LINK)
        log(f'agent {version} installed in {target}')
        self.stage = 'waiting-for-node'
        self.installed.set()
        return None

    def download(self, url):
        self.stage = 'downloading'
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                with urllib.request.urlopen(url, timeout=SOCKET_TIMEOUT_S) as answer:
                    length = int(answer.headers.get('content-length') or -1)
                    refusal = self.receive(answer, length)
                if refusal is None:
                    return
                self.fail(f'{url}: {refusal}')
                return
            except (OSError, ValueError, tarfile.TarError) as err:
                log(f'download {attempt} of {url} failed: {err}')
                time.sleep(min(2 ** attempt, 30))
        self.fail(f'could not download the agent package from {url}')


def handler_for(bootstrap):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = 'plumb-bootstrap'
        sys_version = ''

        def log_message(self, *args):
            pass

        # HTTP/1.1 for `Expect: 100-continue`: a package is refused before any of it is sent.
        protocol_version = 'HTTP/1.1'

        def answer(self, code, body):
            data = json.dumps(body).encode('utf-8')
            self.close_connection = True
            self.send_response(code)
            self.send_header('content-type', 'application/json')
            self.send_header('content-length', str(len(data)))
            self.send_header('connection', 'close')
            self.end_headers()
            self.wfile.write(data)

        def proven(self):
            if bootstrap.controller_proven(self.headers.get(PROOF_HEADER)):
                return True
            self.answer(401, {'code': 'UNAUTHORIZED', 'message': 'prove you hold the enrolment secret'})
            return False

        def length(self):
            try:
                return int(self.headers.get('content-length') or -1)
            except ValueError:
                return -1

        def acceptable(self):
            """Whether a PUT may send its body; if not, the refusal has been answered."""
            if self.path != PACKAGE_PATH:
                self.answer(404, {'code': 'NOT_FOUND', 'message': 'no such endpoint'})
                return False
            if not self.proven():
                return False
            if self.length() != bootstrap.package['bytes']:
                self.answer(400, {'code': 'BAD_PACKAGE', 'message': f'the package must be {bootstrap.package["bytes"]} bytes'})
                return False
            return True

        def handle_expect_100(self):
            # Python calls this only for HTTP/1.1 requests: do_PUT trusts what it checked, never the header.
            self.checked = self.command == 'PUT' and self.acceptable()
            return self.checked and super().handle_expect_100()

        def do_GET(self):
            if self.path != STATUS_PATH:
                return self.answer(404, {'code': 'NOT_FOUND', 'message': 'no such endpoint'})
            if self.proven():
                self.answer(200, bootstrap.status())

        def do_PUT(self):
            # With `Expect: 100-continue` on HTTP/1.1 the checks ran before the body came (handle_expect_100).
            checked, self.checked = getattr(self, 'checked', False), False
            if not checked and not self.acceptable():
                return
            try:
                refusal = bootstrap.receive(self.rfile, self.length())
            except (OSError, tarfile.TarError, ValueError) as err:
                bootstrap.fail(f'could not install the agent package: {err}')
                return self.answer(500, {'code': 'INSTALL_FAILED', 'message': bootstrap.error})
            if refusal is not None:
                return self.answer(400, {'code': 'BAD_PACKAGE', 'message': refusal})
            self.answer(200, bootstrap.status())

    return Handler


class TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context):
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # The handshake happens here, in the connection's own thread, so a slow peer holds no one else up.
        request.settimeout(SOCKET_TIMEOUT_S)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        self.RequestHandlerClass(conn, client_address, self)


def node_installed():
    """True once dpkg has configured nodejs: its binary is unpacked before the libraries it needs."""
    answer = subprocess.run(['dpkg-query', '-W', '-f', '${db:Status-Status}', 'nodejs'], capture_output=True, text=True)
    return answer.returncode == 0 and answer.stdout == 'installed'


def start_agent(bootstrap, server):
    """Waits for node (cloud-init's packages), checks the bundle runs, then gives the agent the port."""
    failing_since = None
    while not node_installed():
        if os.path.exists(CLOUD_INIT_RESULT):
            bootstrap.fail('cloud-init finished without installing nodejs: the agent cannot run')
            return False
        failure = apt_failure()
        if failure is not None:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > APT_FAILURE_GRACE_S:
                bootstrap.fail(f'cloud-init cannot download packages from the Debian mirror ({failure}), so node cannot be installed')
                return False
        time.sleep(POLL_S)
    bundle = f'{AGENT_ROOT}/current/{BUNDLE}'
    check = subprocess.run([NODE, bundle, '--version'], capture_output=True, text=True, timeout=60)
    if check.returncode != 0 or check.stdout.strip() != bootstrap.package['version']:
        bootstrap.fail(f'the agent does not run with this node: {(check.stderr or check.stdout).strip()[-300:]}')
        return False
    bootstrap.stage = 'starting-agent'
    server.shutdown()
    server.server_close()
    subprocess.run(['systemctl', 'daemon-reload'], check=True)
    subprocess.run(['systemctl', 'enable', '--now', 'plumb-agent.service'], check=True)
    log('plumb-agent started; the bootstrap is done')
    return True


def main():
    if os.path.lexists(f'{AGENT_ROOT}/current'):
        log('the agent is installed already; nothing to do')
        return 0
    config = read_json(CONFIG, 'enrolmentSecret')
    package = read_json(PACKAGE, 'sha512')
    key, cert, fingerprint = identity()
    bootstrap = Bootstrap(bytes.fromhex(config['enrolmentSecret']), package, fingerprint)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server = TlsServer((config.get('host') or '0.0.0.0', config['port']), handler_for(bootstrap), context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f'serving port {config["port"]} as {fingerprint}')
    if package.get('url'):
        threading.Thread(target=bootstrap.download, args=(package['url'],), daemon=True).start()
    while not bootstrap.installed.wait(1):
        pass
    if start_agent(bootstrap, server):
        return 0
    # Kept answering so the controller can say why; cloud-init's failure is the droplet's end state.
    while True:
        time.sleep(3600)


if __name__ == '__main__':
    sys.exit(main())
