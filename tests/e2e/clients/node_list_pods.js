#!/usr/bin/env node
// node_list_pods.js [--repeat N] [NAMESPACE]: list the pods of NAMESPACE (default "default")
// with the official JavaScript client, configured exactly as an unmodified in-cluster workload
// is: KubeConfig.loadFromCluster() (KUBERNETES_SERVICE_HOST/PORT + the service-account files).
// With --repeat, N sequential lists (client-node 1.3 opens one connection per request, with
// `Connection: close`), every one of which must be answered. Prints
// {"pods":[names...],"answered":N} on stdout and exits 0; on any failure prints one line to
// stderr naming the request that failed and exits 1 (2 for usage errors).
//
// @kubernetes/client-node 1.x is an ES module only; this file stays CommonJS (the package
// has no "type") and imports it dynamically, which resolves from this directory's
// node_modules whatever the working directory is.
'use strict';

async function main(argv) {
	let repeat = 1;
	if (argv[0] === '--repeat') {
		repeat = Number(argv[1]);
		argv = argv.slice(2);
	}
	if (argv.length > 1 || !Number.isInteger(repeat) || repeat < 1) {
		process.stderr.write('usage: node_list_pods.js [--repeat N] [NAMESPACE]\n');
		return 2;
	}
	const namespace = argv[0] || 'default';
	const k8s = await import('@kubernetes/client-node');
	const kc = new k8s.KubeConfig();
	kc.loadFromCluster();
	const api = kc.makeApiClient(k8s.CoreV1Api);
	let pods = [];
	for (let i = 1; i <= repeat; i++) {
		let list;
		try {
			list = await api.listNamespacedPod({ namespace });
		} catch (err) {
			throw new Error(`request ${i} of ${repeat}: ${describe(err)}`);
		}
		pods = (list.items || []).map((p) => (p.metadata && p.metadata.name) || '');
	}
	process.stdout.write(JSON.stringify({ pods, answered: repeat }) + '\n');
	return 0;
}

function describe(err) {
	// ApiException carries the HTTP status and the response body; network errors a code.
	if (err && typeof err.code === 'number') {
		let body = err.body;
		if (typeof body !== 'string')
			body = JSON.stringify(body);
		return `HTTP ${err.code}: ${body}`;
	}
	if (err && err.code)
		return `${err.code}: ${err.message}`;
	return String(err && err.message ? err.message : err);
}

main(process.argv.slice(2)).then(
	(rc) => { process.exitCode = rc; },
	(err) => {
		process.stderr.write(`node_list_pods: ${describe(err).replace(/\n/g, ' ')}\n`);
		process.exitCode = 1;
	});
