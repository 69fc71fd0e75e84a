/* Reading and rewriting a JSON file in tests of the formats fastlstm writes with cJSON (profiles,
 * plans): load, edit the tree, write back. Include after cmocka.h. */
#ifndef FL_TEST_JSON_FILE_H
#define FL_TEST_JSON_FILE_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* The parsed contents of path (at most 1 MiB: a profile with its low-rank tables); the caller deletes it. */
static inline cJSON *json_file_read(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_true(n < sizeof buf - 1);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    assert_non_null(root);
    return root;
}

/* Writes root to path, replacing it. */
static inline void json_file_write(const char *path, const cJSON *root) {
    char *text = cJSON_Print(root);
    assert_non_null(text);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    free(text);
}

#endif
