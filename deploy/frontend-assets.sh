#!/bin/sh
# Copy the NHS.UK frontend's stylesheet, script and images from node_modules (after `npm ci`)
# into app/static/nhsuk/, where the service serves them under /static/nhsuk/.
set -eu
from=node_modules/nhsuk-frontend/dist/nhsuk
to=app/static/nhsuk
rm -rf "$to"
mkdir -p "$to"
# The stylesheet names its images from the site's root; here they live under /static/nhsuk/.
# Its web font is on the NHS's own server, which the pages' policy does not allow (nor the
# voters' privacy): the font's rules go, and the stylesheet's fallback, Arial, is used.
sed -e 's#url(/assets/#url(/static/nhsuk/assets/#g' -e 's#@font-face{[^}]*}##g' \
  "$from/nhsuk-frontend.min.css" > "$to/nhsuk-frontend.min.css"
cp "$from/nhsuk-frontend.min.js" "$to/"
cp -r "$from/assets" "$to/assets"
