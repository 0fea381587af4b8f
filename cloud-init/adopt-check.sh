# plumb adopt's look at a host before it changes anything (a fragment of the script adopt sends
# over SSH; packages/controller/src/adopt-script.ts). It reports, one line each on stdout:
#   plumb-adopt refuse CODE MESSAGE   why plumb will not take this host over
#   plumb-adopt change MESSAGE        what --force changes that the owner should know
#   plumb-adopt import NAME FORWARD   (--import) an API of plumber's do_deploy_api() to take over;
#                                     FORWARD 1 when do_forward() sends / to it
#   plumb-adopt code NAME BASE64      (--import) that API's files, /var/plumber/NAME, as a gzip tar
#   plumb-adopt droplet ID            DigitalOcean's metadata service says this host is droplet ID
# and stops with nothing changed when there is a refusal (or any, for the OS, an agent a controller
# drives already, too many old APIs, and --group on a host that is not a DigitalOcean droplet).

plumb_say() { echo "plumb-adopt $*"; }
plumb_refusals=0
plumb_refuse() { plumb_refusals=$((plumb_refusals + 1)); plumb_say refuse "$@"; }

plumb_os=$( (. /etc/os-release && echo "${ID:-unknown}:${VERSION_ID:-}:${PRETTY_NAME:-unknown}") 2>/dev/null || echo "unknown::an unknown system (no /etc/os-release)")
case "$plumb_os" in
  debian:13:*) ;;
  *)
    plumb_say refuse ADOPT_UNSUPPORTED_OS "the host runs ${plumb_os#*:*:}; plumb supports Debian 13 (trixie) only"
    exit 0 ;;
esac
# The agent forgets its enrolment secret at the first authenticated socket: one that still holds it
# was never driven by any controller. That is what an adopt cut short leaves (the SSH session or
# the controller gone between the agent's install and its enrolment), and it is replaced below.
plumb_config=/etc/plumb-agent/config.json
plumb_half_done=0
if [ -f "$plumb_config" ] && grep -q '"enrolmentSecret"' "$plumb_config"; then
  plumb_half_done=1
elif [ -e /opt/plumb-agent/current ]; then
  plumb_say refuse ADOPT_ALREADY "the host already has a plumb agent (/opt/plumb-agent)"
  exit 0
fi

# plumber's do_provision()/do_deploy_api() layout (--import): a unit plumber-NAME.service running
# /var/plumber/NAME/plumber.R, its location in sites-available/plumber-apis/NAME.conf, and the site
# `plumber` that includes those. They keep serving until plumb's own workers answer at the same
# paths (the agent's retire-legacy step); here they are only read.
plumb_legacy_site=/etc/nginx/sites-enabled/plumber
plumb_legacy_apis=
if [ "$PLUMB_IMPORT" = 1 ]; then
  for plumb_unit in /etc/systemd/system/plumber-*.service; do
    [ -f "$plumb_unit" ] || continue
    plumb_name=${plumb_unit#/etc/systemd/system/plumber-}
    plumb_name=${plumb_name%.service}
    case "$plumb_name" in *@*) continue ;; esac
    if ! echo "$plumb_name" | grep -Eq '^[a-z][a-z0-9_-]{0,38}[a-z0-9]$|^[a-z]$'; then
      plumb_refuse ADOPT_CLASH "the unit $plumb_unit serves an API whose name plumb cannot take (lower-case letters, digits, - and _, up to 40)"
    elif [ ! -f "/var/plumber/$plumb_name/plumber.R" ]; then
      plumb_refuse ADOPT_CLASH "the unit $plumb_unit has no /var/plumber/$plumb_name/plumber.R to import"
    else
      plumb_legacy_apis="$plumb_legacy_apis $plumb_name"
    fi
  done
  if [ -z "$plumb_legacy_apis" ]; then
    plumb_refuse ADOPT_CLASH "--import found no API of plumber's do_deploy_api() (a unit /etc/systemd/system/plumber-NAME.service)"
  fi
  # Checked before anything is installed (--force does not lift it): the agent takes at most this many in one step.
  plumb_legacy_count=$(echo $plumb_legacy_apis | wc -w)
  if [ "$plumb_legacy_count" -gt "$PLUMB_LEGACY_APIS_MAX" ]; then
    plumb_say refuse ADOPT_IMPORT_LIMIT "--import found $plumb_legacy_count APIs of plumber's do_deploy_api(); plumb imports at most $PLUMB_LEGACY_APIS_MAX in one adopt"
    exit 0
  fi
fi

# Debian's own default site, unchanged, is plumb's to switch off (the agent does); anything else
# that serves port 80 (explicitly, or by having no listen at all) clashes with plumb's nginx.
plumb_default_md5=$(dpkg-query -W -f='${Conffiles}\n' 2>/dev/null | awk '$1 == "/etc/nginx/sites-available/default" { print $2; exit }')
plumb_serves_80() {
  grep -Eq '^[[:space:]]*listen[[:space:]]+([^;]*:)?80([[:space:];]|$)' "$1" ||
    { grep -Eq '^[[:space:]]*server[[:space:]]*\{' "$1" && ! grep -Eq '^[[:space:]]*listen[[:space:]]' "$1"; }
}
plumb_clashing_sites=
for plumb_site in /etc/nginx/sites-enabled/* /etc/nginx/conf.d/*.conf; do
  [ -f "$plumb_site" ] || continue
  [ "$plumb_site" = /etc/nginx/conf.d/plumb.conf ] && continue
  [ -n "$plumb_legacy_apis" ] && [ "$plumb_site" = "$plumb_legacy_site" ] && continue
  if [ "$plumb_site" = /etc/nginx/sites-enabled/default ] && [ -n "$plumb_default_md5" ] &&
    [ "$(md5sum < "$plumb_site" | cut -d' ' -f1)" = "$plumb_default_md5" ]; then
    continue
  fi
  if plumb_serves_80 "$plumb_site"; then
    plumb_refuse ADOPT_CLASH "nginx already serves port 80 with $plumb_site"
    plumb_clashing_sites="$plumb_clashing_sites $plumb_site"
  fi
done

if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then
  plumb_other_rules=$(ufw status | awk 'f && NF { r = $1; sub(/ \(v6\)$/, "", r); print r } /^--/ { f = 1 }' |
    grep -Ev "^(22|22/tcp|80|80/tcp|443|443/tcp|$PLUMB_AGENT_PORT|$PLUMB_AGENT_PORT/tcp)\$" | sort -u | tr '\n' ' ')
  [ -n "$plumb_other_rules" ] && plumb_refuse ADOPT_CLASH "ufw is active with rules plumb did not make: $plumb_other_rules"
fi

# With --import, /var/plumber may hold the APIs imported and do_provision()'s example plumber.R.
plumb_var_other=
if [ -e /var/plumber ]; then
  plumb_var_other=/var/plumber
  if [ -n "$plumb_legacy_apis" ]; then
    plumb_var_other=
    for plumb_entry in /var/plumber/* /var/plumber/.[!.]*; do
      [ -e "$plumb_entry" ] || continue
      case " $plumb_legacy_apis /var/plumber/plumber.R " in *" ${plumb_entry#/var/plumber/} "*|*" $plumb_entry "*) continue ;; esac
      plumb_var_other="$plumb_var_other $plumb_entry"
    done
  fi
fi
# `plumb uninstall` leaves its APIs serving, with the state a new agent takes them over from.
if [ -n "$plumb_var_other" ] && [ -f /var/lib/plumb/state.json ]; then
  plumb_var_other=
  grep -q '^  "apis": {}' /var/lib/plumb/state.json ||
    plumb_say change "the APIs plumb uninstall left in /var/plumber are the new agent's (from /var/lib/plumb/state.json)"
fi
# After a half-done adopt it is the one that adopt made (or one its check let it keep).
[ "$plumb_half_done" = 1 ] && plumb_var_other=
plumb_var_listed=${plumb_var_other#/var/plumber}
[ -n "$plumb_var_other" ] && plumb_refuse ADOPT_CLASH "/var/plumber exists${plumb_var_listed:+ with$plumb_var_listed}: plumb keeps its APIs there"

# A DigitalOcean droplet knows its id from the metadata service (root only once plumb's filter is
# on: APIs never reach it); anywhere else nothing answers there within the short wait.
plumb_droplet_id=
if command -v curl >/dev/null 2>&1; then
  plumb_droplet_id=$(curl -fsS --max-time "$PLUMB_METADATA_TIMEOUT_S" http://169.254.169.254/metadata/v1/id 2>/dev/null || true)
  case "$plumb_droplet_id" in ''|*[!0-9]*) plumb_droplet_id= ;; *) plumb_say droplet "$plumb_droplet_id" ;; esac
fi
# Groups are DigitalOcean tags: a host that is not a droplet cannot join one (--force does not lift it).
if [ "$PLUMB_GROUP" = 1 ] && [ -z "$plumb_droplet_id" ]; then
  plumb_say refuse INVALID_INPUT "--group tags a DigitalOcean droplet, and this host is none (its metadata service did not answer)"
  exit 0
fi

if [ "$plumb_refusals" -gt 0 ]; then
  [ "$PLUMB_FORCE" = 1 ] || exit 0
  # nginx includes every file of sites-enabled/ and *.conf of conf.d/: out of both.
  for plumb_site in $plumb_clashing_sites; do
    mkdir -p /etc/nginx/plumb-disabled
    mv "$plumb_site" "/etc/nginx/plumb-disabled/$(basename "$(dirname "$plumb_site")")-$(basename "$plumb_site")"
    plumb_say change "nginx: $plumb_site disabled (moved to /etc/nginx/plumb-disabled/); sites that do not serve port 80 stay enabled"
  done
  [ -n "${plumb_other_rules:-}" ] && plumb_say change "ufw: incoming now denied by default; kept the rules $plumb_other_rules"
  [ -n "$plumb_var_other" ] && plumb_say change "/var/plumber kept as it is; plumb adds its APIs beside what is there"
fi
if [ "$plumb_half_done" = 1 ]; then
  # Its bootstrap may still wait for a package with the old secret, and its agent holds the port:
  # both go, so the bootstrap below starts afresh with this adopt's config. Its TLS key stays.
  systemctl stop plumb-bootstrap.service plumb-agent.service >/dev/null 2>&1 || true
  systemctl disable plumb-agent.service >/dev/null 2>&1 || true
  rm -rf /opt/plumb-agent /usr/local/bin/plumb-agent
  # An enrolment whose answer never arrived marked the state enrolled: it is enrolled afresh.
  for plumb_state in /var/lib/plumb/state.json /var/lib/plumb/state.json.backup; do
    if [ -f "$plumb_state" ]; then sed -i 's/^\(  "enrolledAt": \)"[^"]*"/\1null/' "$plumb_state"; fi
  done
  plumb_say change "the agent an adopt cut short left here (installed, never enrolled) is replaced"
fi
if ! ufw status 2>/dev/null | grep -q '^Status: active' || ! ufw status verbose 2>/dev/null | grep -q 'deny (incoming)'; then
  plumb_say change "ufw: on, incoming denied by default except SSH (22), HTTP (80) and the agent ($PLUMB_AGENT_PORT)"
fi
for plumb_name in $plumb_legacy_apis; do
  plumb_forward=0
  grep -Eqs "return +[0-9]+ +/$plumb_name/?;" /etc/nginx/sites-available/plumber-apis/_forward.conf && plumb_forward=1
  plumb_say import "$plumb_name" "$plumb_forward"
  # Without what a plumb release of the same name left there (an import rolled back, an uninstall):
  # its releases, the live link, the manifests, the R library, R's home and the spare's fifo.
  plumb_say code "$plumb_name" "$(tar -C "/var/plumber/$plumb_name" --exclude=./releases --exclude=./current --exclude=./manifests --exclude=./library --exclude=./home --exclude=./spare.fifo -czf - . | base64 -w0)"
done
plumb_say checked
