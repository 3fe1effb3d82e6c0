echo "$GREETING: site $SITE, running as $(id -un) in $PWD"
cat index.html
