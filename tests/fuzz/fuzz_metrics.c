/*
 * Fuzzes the label-value escaper with any bytes a pod could put in a path:
 * the output is valid UTF-8 with no raw '"' or line feed and no escape but
 * \\, \" and \n; unescaped, it gives back the input wherever the input was
 * valid UTF-8; and every cut (any buffer size) is a prefix of whole pieces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../userspace/core/metrics.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1), *out, *back, *cut;
	size_t need, i, o = 0;

	if (!in)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0'; /* C strings: the value ends at the first NUL */
	need = mg_metrics_escape_label(in, NULL, 0);
	out = malloc(need + 1);
	back = malloc(need + 1);
	if (!out || !back || mg_metrics_escape_label(in, out, need + 1) != need ||
	    strlen(out) != need)
		abort();
	for (i = 0; i < need;) {
		size_t n = mg_utf8_seq_len((const unsigned char *)out + i);

		if (!n || out[i] == '"' || out[i] == '\n')
			abort();
		if (out[i] == '\\') {
			if (out[i + 1] != '\\' && out[i + 1] != '"' && out[i + 1] != 'n')
				abort();
			back[o++] = out[i + 1] == 'n' ? '\n' : out[i + 1];
			i += 2;
			continue;
		}
		memcpy(back + o, out + i, n);
		o += n;
		i += n;
	}
	back[o] = '\0';
	if (!memchr(back, 0xef, o) && strcmp(back, in)) /* no U+FFFD: input was valid */
		abort();
	cut = malloc(need + 2);
	for (size_t cap = 1; cut && cap <= need + 1 && cap < 64; cap++) {
		mg_metrics_escape_label(in, cut, cap);
		if (strncmp(cut, out, strlen(cut)))
			abort();
	}
	free(cut);
	free(back);
	free(out);
	free(in);
	return 0;
}
