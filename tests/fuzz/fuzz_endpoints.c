/*
 * Fuzzes the endpoint set computation over API answers: the input is the
 * Service JSON, a NUL byte, then the EndpointSliceList JSON. Never crashes;
 * a set is complete or empty, within MG_ENDPOINTS_MAX, without duplicates,
 * and never holds an address of a slice it did not believe.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../userspace/core/config.c"
#include "../../userspace/node/endpoints.c"
#include "../../userspace/net/kube.c"
#include "../../userspace/core/log.c"

/* True if <a> appears in a slice of <slices> that is not believed. */
static bool from_rejected_only(const struct mg_abi_addr *a, json_t *svc, json_t *slices)
{
	json_t *ips = service_ips(svc), *it;
	bool rejected = false, trusted = false;
	size_t i;

	json_array_foreach(json_object_get(slices, "items"), i, it)
	{
		struct mg_endpoints_result *one = calloc(1, sizeof(*one));
		json_t *l = json_pack("{s:[O]}", "items", it);

		mg_endpoints_compute(NULL, 0, NULL, 0, svc, l, one);
		for (size_t j = 0; j < one->n; j++)
			if (!memcmp(&one->addrs[j], a, sizeof(*a)))
				*(mg_endpoints_slice_trusted(it, ips) ? &trusted : &rejected) =
					true;
		json_decref(l);
		free(one);
	}
	json_decref(ips);
	return rejected && !trusted;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	struct mg_endpoints_result *r;
	json_t *svc, *slices;

	if (!nul)
		return 0;
	svc = json_loadb((const char *)data, nul - data, 0, NULL);
	slices = json_loadb((const char *)nul + 1, size - (nul + 1 - data), 0, NULL);
	r = calloc(1, sizeof(*r));
	mg_endpoints_compute(NULL, 0, NULL, 0, svc, slices, r);
	if (r->n > MG_ENDPOINTS_MAX || (r->verdict != MG_ENDPOINTS_OK && r->n))
		abort();
	for (size_t i = 0; i < r->n; i++)
		for (size_t j = i + 1; j < r->n; j++)
			if (!memcmp(&r->addrs[i], &r->addrs[j], sizeof(r->addrs[i])))
				abort();
	if (r->verdict == MG_ENDPOINTS_OK)
		for (size_t i = 0; i < r->n; i++)
			if (from_rejected_only(&r->addrs[i], svc, slices)) {
				/* allowed only when the Service itself names it */
				json_t *ips = service_ips(svc), *ip, *p;
				bool in_svc = false;
				size_t k, m;

				json_array_foreach(
					json_object_get(json_object_get(svc, "spec"), "ports"), k,
					p) json_array_foreach(ips, m, ip)
				{
					struct mg_abi_addr a;

					if (json_is_string(ip) && tcp_port(p) &&
					    !mg_addr_parse_ip(json_string_value(ip), tcp_port(p),
							      &a) &&
					    !memcmp(&a, &r->addrs[i], sizeof(a)))
						in_svc = true;
				}
				json_decref(ips);
				if (!in_svc)
					abort();
			}
	free(r);
	json_decref(svc);
	json_decref(slices);
	return 0;
}
