/* Unit tests: a GCS upload counts as stored only when its reply is our object resource. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "gcs_reply.h"

#define MD5 "1B2M2Y8AsgTpgAmY7PhCfg=="
#define GOOD "{\"kind\":\"storage#object\",\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"12\"," \
             "\"md5Hash\":\"" MD5 "\",\"crc32c\":\"AAAAAA==\"}"

static int
check(const char *body, const char *md5)
{
    char err[160] = "";
    int rc = bp_gcs_reply_check(body, strlen(body), "bk", "a/b.json", 12, md5, err, sizeof(err));
    if (rc != 0)
        assert_true(err[0] != '\0'); /* every refusal says why */
    return rc;
}

static void
test_good(void **state)
{
    (void)state;
    assert_int_equal(check(GOOD, NULL), 0);
    assert_int_equal(check(GOOD, MD5), 0);
    /* no kind, size as a JSON integer, no md5Hash: still our object */
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":12}", MD5), 0);
}

static void
test_not_json(void **state)
{
    (void)state;
    assert_int_equal(check("", NULL), -1);
    assert_int_equal(check("OK", NULL), -1);
    assert_int_equal(check("<html>200 OK</html>", NULL), -1);
    assert_int_equal(check("[]", NULL), -1);
    assert_int_equal(check("{}", NULL), -1);
    assert_int_equal(check("null", NULL), -1);
}

static void
test_truncated(void **state)
{
    (void)state;
    char buf[sizeof(GOOD)];
    for (size_t n = 0; n + 1 < sizeof(GOOD); n++) {
        char err[160];
        memcpy(buf, GOOD, n);
        assert_int_equal(bp_gcs_reply_check(buf, n, "bk", "a/b.json", 12, NULL, err, sizeof(err)),
                         -1);
    }
    assert_int_equal(check(GOOD "x", NULL), -1); /* trailing garbage */
}

static void
test_wrong_fields(void **state)
{
    (void)state;
    assert_int_equal(check("{\"bucket\":\"other\",\"name\":\"a/b.json\",\"size\":\"12\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/c.json\",\"size\":\"12\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\\u0000x\",\"size\":\"12\"}",
                           NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"11\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"0\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"12x\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"-12\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":-12}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"99999999999999999"
                           "9999999\"}", NULL), -1);
    assert_int_equal(check("{\"kind\":\"storage#bucket\",\"bucket\":\"bk\",\"name\":\"a/b.json\","
                           "\"size\":\"12\"}", NULL), -1);
    assert_int_equal(check("{\"bucket\":[\"bk\"],\"name\":\"a/b.json\",\"size\":\"12\"}", NULL), -1);
}

static void
test_wrong_md5(void **state)
{
    (void)state;
    assert_int_equal(check(GOOD, "XUFAKrxLKna5cZ2REBfFkg=="), -1);
    assert_int_equal(check("{\"bucket\":\"bk\",\"name\":\"a/b.json\",\"size\":\"12\","
                           "\"md5Hash\":5}", NULL), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_fields),
        cmocka_unit_test(test_wrong_md5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
