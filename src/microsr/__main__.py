from microsr.cli import app

app(prog_name="microsr")
