/*
 * Golden vectors: build each message described in vectors/manifest.txt, check
 * it against vectors/NAME.bin byte for byte, decode the file and compare.
 * `test_vectors --write DIR` (re)writes the .bin files.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcheck.h"
#include "vr_msg.h"

#define MAXV 96
#define BUFSZ (VR_MSG_MAX + 4096)

struct vec {
	char name[64];
	struct vr_msg m;
	int has_msg;
	uint8_t store[VR_A_LIMIT][1024]; /* bytes for non-numeric attributes */
	uint8_t bytes[BUFSZ];
	size_t len;
	int expect; /* 0 ok, else error code */
};

static struct vec vecs[MAXV];
static int nvec;

static struct vec *find(const char *name)
{
	for (int i = 0; i < nvec; i++)
		if (!strcmp(vecs[i].name, name))
			return &vecs[i];
	return NULL;
}

static void die(int line, const char *what)
{
	fprintf(stderr, "manifest.txt:%d: %s\n", line, what);
	exit(2);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void encode_current(struct vec *v, int line)
{
	int n = vr_msg_encode(&v->m, v->bytes, sizeof(v->bytes));

	if (n < 0)
		die(line, "encode failed");
	v->len = (size_t)n;
	v->has_msg = 0;
}

static void parse_attr(struct vec *v, const char *name, const char *val, int line)
{
	int id = vr_attr_by_name(name);
	uint8_t *st;
	int kind;

	if (id < 0)
		die(line, "unknown attribute");
	kind = vr_attr_kind((unsigned)id);
	st = v->store[id];
	switch (kind) {
	case VR_K_MAC: {
		unsigned b[6];
		if (sscanf(val, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
			die(line, "bad MAC");
		for (int i = 0; i < 6; i++)
			st[i] = (uint8_t)b[i];
		vr_msg_put_bytes(&v->m, (unsigned)id, st, 6);
		break;
	}
	case VR_K_IP:
		if (strchr(val, ':')) {
			if (inet_pton(AF_INET6, val, st) != 1)
				die(line, "bad IPv6");
			vr_msg_put_bytes(&v->m, (unsigned)id, st, 16);
		} else {
			if (inet_pton(AF_INET, val, st) != 1)
				die(line, "bad IPv4");
			vr_msg_put_bytes(&v->m, (unsigned)id, st, 4);
		}
		break;
	case VR_K_STR:
		strcpy((char *)st, val);
		vr_msg_put_bytes(&v->m, (unsigned)id, st, (uint16_t)strlen(val));
		break;
	case VR_K_U32A:
	case VR_K_U64A: {
		int esz = kind == VR_K_U32A ? 4 : 8, n = 0;
		char tmp[1024], *save = NULL;
		snprintf(tmp, sizeof(tmp), "%s", val);
		for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
			unsigned long long x = strtoull(t, NULL, 0);
			for (int i = 0; i < esz; i++)
				st[n * esz + i] = (uint8_t)(x >> (8 * (esz - 1 - i)));
		}
		vr_msg_put_bytes(&v->m, (unsigned)id, st, (uint16_t)(n * esz));
		break;
	}
	default:
		vr_msg_put_num(&v->m, (unsigned)id, (uint64_t)strtoll(val, NULL, 0));
		if (kind == VR_K_U64)
			v->m.a[id].num = strtoull(val, NULL, 0);
		break;
	}
}

static void load_manifest(const char *dir)
{
	char path[512], line[2048];
	struct vec *v = NULL;
	int ln = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/manifest.txt", dir);
	f = fopen(path, "r");
	if (!f) {
		perror(path);
		exit(2);
	}
	while (fgets(line, sizeof(line), f)) {
		char a[1024] = "", b[1024] = "";
		ln++;
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		if (line[0] == '[') {
			if (v && v->has_msg)
				encode_current(v, ln);
			if (nvec == MAXV)
				die(ln, "too many vectors");
			v = &vecs[nvec++];
			sscanf(line, "[%63[^]]]", v->name);
			continue;
		}
		if (!v)
			die(ln, "line outside a vector");
		sscanf(line, "%1023s %1023[^\n]", a, b);
		if (!strcmp(a, "hdr")) {
			unsigned op, obj, fl, seq;
			if (sscanf(b, "%u %u %u %u", &op, &obj, &fl, &seq) != 4)
				die(ln, "bad hdr");
			vr_msg_init(&v->m, (uint8_t)op, (uint8_t)obj, (uint8_t)fl, seq);
			v->has_msg = 1;
		} else if (!strcmp(a, "from")) {
			struct vec *src = find(b);
			if (!src || src->has_msg)
				die(ln, "from: unknown vector");
			memcpy(v->bytes, src->bytes, src->len);
			v->len = src->len;
		} else if (!strcmp(a, "truncate")) {
			v->len = strtoul(b, NULL, 0);
		} else if (!strcmp(a, "set")) {
			unsigned long off, val;
			if (sscanf(b, "%lu %li", &off, (long *)&val) != 2 || off >= v->len)
				die(ln, "bad set");
			v->bytes[off] = (uint8_t)val;
		} else if (!strcmp(a, "append")) {
			for (size_t i = 0; b[i] && b[i + 1]; i += 2)
				v->bytes[v->len++] = (uint8_t)(hexval(b[i]) << 4 | hexval(b[i + 1]));
		} else if (!strcmp(a, "pad")) {
			size_t n = strtoul(b, NULL, 0);
			if (v->len + n > sizeof(v->bytes))
				die(ln, "pad too big");
			memset(v->bytes + v->len, 0, n);
			v->len += n;
		} else if (!strcmp(a, "fixlen")) {
			uint32_t l = htonl((uint32_t)v->len);
			memcpy(v->bytes + 12, &l, 4);
		} else if (!strcmp(a, "expect")) {
			if (v->has_msg)
				encode_current(v, ln);
			if (!strcmp(b, "ok"))
				v->expect = 0;
			else if (sscanf(b, "error %d", &v->expect) != 1)
				die(ln, "bad expect");
		} else {
			parse_attr(v, a, b, ln);
		}
	}
	fclose(f);
}

/* Decode the file and compare every attribute with the manifest's message. */
static void check_decoded(struct vec *v, const uint8_t *buf, size_t len)
{
	struct vr_msg got, want;
	uint8_t again[BUFSZ];
	int rc = vr_msg_parse(buf, len, &got);

	if (v->expect) {
		if (rc != -v->expect)
			fprintf(stderr, "%s: want error %d, got %d\n", v->name, v->expect, -rc);
		CHECK_EQ(rc, -v->expect);
		return;
	}
	CHECK_EQ(rc, 0);
	if (rc)
		return;
	/* The manifest's message, re-parsed, is the reference for values. */
	CHECK_EQ(vr_msg_parse(v->bytes, v->len, &want), 0);
	CHECK_EQ(got.op, want.op);
	CHECK_EQ(got.obj, want.obj);
	CHECK_EQ(got.flags, want.flags);
	CHECK_EQ(got.seq, want.seq);
	for (unsigned id = 0; id < VR_A_LIMIT; id++) {
		CHECK_EQ(got.a[id].present, want.a[id].present);
		CHECK_EQ(got.a[id].len, want.a[id].len);
		CHECK(got.a[id].num == want.a[id].num);
		if (got.a[id].present && got.a[id].len)
			CHECK(!memcmp(got.a[id].ptr, want.a[id].ptr, got.a[id].len));
	}
	rc = vr_msg_encode(&got, again, sizeof(again));
	CHECK_EQ(rc, (int)len);
	if (rc == (int)len)
		CHECK(!memcmp(again, buf, len));
}

int main(int argc, char **argv)
{
	const char *dir = argc > 2 ? argv[2] : "tests/vectors";
	int write = argc > 1 && !strcmp(argv[1], "--write");

	if (argc > 1 && !write)
		dir = argv[1];
	load_manifest(dir);
	for (int i = 0; i < nvec; i++) {
		struct vec *v = &vecs[i];
		static uint8_t file[BUFSZ];
		char path[512];
		size_t n;
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s.bin", dir, v->name);
		if (write) {
			f = fopen(path, "wb");
			if (!f || fwrite(v->bytes, 1, v->len, f) != v->len) {
				perror(path);
				return 2;
			}
			fclose(f);
			continue;
		}
		f = fopen(path, "rb");
		if (!f) {
			perror(path);
			t_failures++;
			continue;
		}
		n = fread(file, 1, sizeof(file), f);
		fclose(f);
		CHECK_EQ(n, v->len);
		if (n != v->len || memcmp(file, v->bytes, n)) {
			fprintf(stderr, "%s: file differs from manifest\n", v->name);
			t_failures++;
		}
		check_decoded(v, file, n);
	}
	if (write) {
		printf("wrote %d vectors to %s\n", nvec, dir);
		return 0;
	}
	printf("%d vectors\n", nvec);
	T_DONE("test_vectors");
}
