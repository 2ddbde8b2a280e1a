"""
Browser tests of the dashboard: headless Chromium, driven by Playwright,
against a real server on a loopback TLS port.
"""
