"""The upload page's HTML: a static shell; web/src/upload.js fills it in. No inline script or style (the
app CSP forbids both); the empty data: icon keeps the browser from asking for /favicon.ico."""

from __future__ import annotations

UPLOAD_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Filegate \xc2\xb7 Upload</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app/static/upload.css">
<script defer src="/app/static/upload.js"></script>
</head>
<body>
<header class="fg-header">
<h1>Upload files</h1>
<div id="session" data-auth="loading" aria-live="polite">Checking your session\xe2\x80\xa6</div>
</header>
<main>
<div id="uppy"></div>
<h2>Files</h2>
<ul id="results" aria-live="polite"></ul>
<noscript>This page needs JavaScript.</noscript>
</main>
</body>
</html>
"""
