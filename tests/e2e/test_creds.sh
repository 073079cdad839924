#!/usr/bin/env bash
# Short-lived upstream credentials, end to end: the pod's own token never
# leaves the node; the API server sees an EKS token for the rule's role
# (AssumeRole at a fake STS, validated as aws-iam-authenticator does), a
# TokenRequest token, or the daemon's identity impersonating the pod.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs
REQLOG="$RIG_DIR/api-requests.jsonl"
K=/usr/lib/google-cloud-sdk/bin/kubectl.1.33
rig_pod agent 1 burstable default mcp-agent
rig_pod agent2 1 burstable default mcp-agent2
TOKEN=$(cat "$RIG_DIR/pods/agent/run/secrets/kubernetes.io/serviceaccount/token")

# fake STS on 10.97.0.10:443 (TLS, in the API host namespace)
(exec nsenter --net="/run/netns/$RIG_API" "$RIG_PY" "$RIG_ROOT_DIR/tests/e2e/fakests.py" \
	--host 10.97.0.10 --port 443 --tls-cert "$RIG_DIR/certs/server.crt" \
	--tls-key "$RIG_DIR/certs/server.key" >"$RIG_DIR/fakests.log" 2>&1) &
RIG_PIDS+=($!)
rig_wait_log "$RIG_DIR/fakests.log" "listening on" 10 || fail "fake STS starts"
sts() { in_api curl -s --cacert "$RIG_DIR/certs/ca.crt" "$@"; }

cat >"$RIG_DIR/extra-state.json" <<'JSON'
{"namespaces": [{"metadata": {"name": "mcpgate"}}],
 "serviceaccounts": [{"metadata": {"name": "executor", "namespace": "mcpgate"}}]}
JSON
# The fake API knows the pods' own tokens: agent's belongs to its own
# ServiceAccount, agent2's (for the token review case) to agent's.
TOKEN2=$(cat "$RIG_DIR/pods/agent2/run/secrets/kubernetes.io/serviceaccount/token")
rig_fakeapi --eks-cluster e2e-cluster --eks-sts-host 10.97.0.10 \
	--token "$TOKEN=system:serviceaccount:default:mcp-agent" \
	--token "$TOKEN2=system:serviceaccount:default:mcp-agent"
last_user() { grep "$1" "$REQLOG" | tail -1 | $RIG_PY -c 'import json,sys; print(json.loads(sys.stdin.readline()).get("user"))'; }

# ---- eks: AssumeRole into the rule's role, token signed with the session ----
RIG_DAEMON_ENV="AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" \
	rig_daemon --creds-provider eks --eks-cluster e2e-cluster --eks-region us-east-1 \
	--sts-endpoint https://10.97.0.10 --sts-ca-file "$RIG_DIR/certs/ca.crt" \
	--role-arn arn:aws:iam::111122223333:role/mcp-exec || { fail "mcpgated (eks) starts"; summary; exit 1; }
out=$(in_pod agent "$K" get pods -l marker=eks1 2>&1)
check "eks: kubectl works through the proxy" grep -q 'No resources found' <<<"$out"
user=$(last_user 'marker%3Deks1')
check "eks: the API server authenticated the rule's role ($user)" grep -q 'assumed-role/mcp-exec/mcpgate-default-agent' <<<"$user"
check "eks: the AssumeRole carried the pod uid as SourceIdentity" \
	grep -q "$(pod_var agent UID)" <<<"$(sts https://10.97.0.10/_requests)"
check "eks: the pod's token reached nothing" test -z "$(grep -F "$TOKEN" "$REQLOG")"

# STS down: a pod with no cached token gets a 502 Status, nothing is forwarded
sts -X POST -d '{"mode":"down"}' https://10.97.0.10/_control >/dev/null
before=$(grep -c . "$REQLOG")
out=$(in_pod agent2 "$K" get pods -l marker=eks2 -v=0 2>&1)
check "eks: STS down -> the request fails" grep -qi 'error' <<<"$out"
check "eks: STS down -> a 502 naming the STS failure" grep -q '"event":"creds_failed"' "$RIG_DAEMON_LOG"
check "eks: STS down -> nothing forwarded" test -z "$(grep 'marker%3Deks2' "$REQLOG")"
sts -X POST -d '{"mode":"up"}' https://10.97.0.10/_control >/dev/null
# a denied role: the STS error code reaches the client, no fallback
rig_kill_pid "$RIG_DAEMON_PID"
RIG_DAEMON_ENV="AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" \
	rig_daemon --creds-provider eks --eks-cluster e2e-cluster --eks-region us-east-1 \
	--sts-endpoint https://10.97.0.10 --sts-ca-file "$RIG_DIR/certs/ca.crt" \
	--role-arn arn:aws:iam::111122223333:role/deny-me || fail "mcpgated (eks deny) starts"
out=$(in_pod agent "$K" get --raw '/api/v1/namespaces/default/pods?labelSelector=marker%3Deks3' 2>&1)
check "eks: AccessDenied from STS reaches the client as the reason" grep -q 'AccessDenied' <<<"$out"
check "eks: AccessDenied -> nothing forwarded" test -z "$(grep 'marker%3Deks3' "$REQLOG")"

# ---- serviceaccount: TokenRequest for the executor ServiceAccount ----
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --creds-provider serviceaccount --sa-namespace mcpgate --sa-name executor || fail "mcpgated (serviceaccount) starts"
out=$(in_pod agent "$K" get pods -l marker=sa1 2>&1)
check "serviceaccount: kubectl works" grep -q 'No resources found' <<<"$out"
check "serviceaccount: a TokenRequest was made for mcpgate/executor" \
	grep -q '/api/v1/namespaces/mcpgate/serviceaccounts/executor/token' "$REQLOG"
user=$(last_user 'marker%3Dsa1')
check "serviceaccount: authenticated as system:serviceaccount:mcpgate:executor ($user)" test "$user" = system:serviceaccount:mcpgate:executor

# ---- impersonate: the daemon's identity, impersonating the pod ----
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --creds-provider impersonate --impersonate-groups mcpgate:agents || fail "mcpgated (impersonate) starts"
out=$(in_pod agent "$K" get pods -l marker=imp0 2>&1)
check "impersonate: kubectl works" grep -q 'No resources found' <<<"$out"
# kubectl's --as would drop in-cluster config; ask for impersonation by hand
SA=/var/run/secrets/kubernetes.io/serviceaccount
in_pod agent sh -c "curl -s --cacert $SA/ca.crt -H \"Authorization: Bearer \$(cat $SA/token)\" \
	-H 'Impersonate-User: system:admin' -H 'Impersonate-Group: system:masters' \
	'https://10.96.0.1/api/v1/namespaces/default/pods?labelSelector=marker%3Dimp1'" >/dev/null
line=$(grep 'marker%3Dimp1' "$REQLOG" | tail -1)
check "impersonate: Impersonate-User is the pod's ServiceAccount, not what the pod asked" \
	grep -qi '"impersonate-user", "system:serviceaccount:default:mcp-agent"' <<<"$line"
check "impersonate: the group from the config" grep -qi '"impersonate-group", "mcpgate:agents"' <<<"$line"
check "impersonate: the pod uid as an extra" grep -qi "impersonate-extra-mcpgate.io%2fpod-uid\", \"$(pod_var agent UID)" <<<"$line"
# ---- the pod's own token, checked with a TokenReview ----
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --token-review true || fail "mcpgated (token review) starts"
out=$(in_pod agent "$K" get pods -l marker=tr1 2>&1)
check "token review: the pod's own ServiceAccount token passes" grep -q 'No resources found' <<<"$out"
check "token review: a TokenReview was sent" grep -q '/apis/authentication.k8s.io/v1/tokenreviews' "$REQLOG"
out=$(in_pod agent2 "$K" get pods -l marker=tr2 2>&1)
check "token review: another ServiceAccount's token -> 401 ($(tail -n1 <<<"$out"))" grep -qiE 'Unauthorized|logged in|401' <<<"$out"
check "token review: recorded" grep -q '"event":"token_review_failed".*"expected":"system:serviceaccount:default:mcp-agent2"' "$RIG_DAEMON_LOG"
check "token review: nothing forwarded for the refused pod" test -z "$(grep 'marker%3Dtr2' "$REQLOG")"
# (the TokenReview body carries the token by design: exclude that one request)
check "the pod's token reached nothing, in any mode" \
	test -z "$(grep -v '/tokenreviews' "$REQLOG" | grep -F "$TOKEN"; grep -F "$TOKEN" "$RIG_DIR"/mcpgated.*.log)"
summary
