import subprocess, sys
def test_probe(hub):
    out = subprocess.run([sys.executable, "/tmp/probe.py", hub.url, hub.token("display"), hub.token("kiosk")], capture_output=True, text=True)
    print(out.stdout, out.stderr)
