"""The browser app: the upload page (/app/upload) and its bundle (/app/static/*, built from web/ by
scripts/web.sh into gateway/web/static/)."""
