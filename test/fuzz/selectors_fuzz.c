/* Fuzzes selector parsing: the input as one selector and as a newline-separated list. A
 * set's canonical text must parse back to an equal set that prints the same text, in strict
 * canonical order, and the set relations must agree with themselves. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"
#include "sigil/selectors.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void
one_selector(const uint8_t *data, size_t size)
{
    struct sigil_selector sel, again;
    const char *why = NULL;
    int r = sigil_selector_parse((const char *)data, size, &sel, &why);

    if (r != 0) {
        CHECK(why != NULL && strncmp(why, "selector", 8) == 0);
        CHECK(sel.type == NULL && sel.value == NULL);
        return;
    }
    CHECK(sel.type_len + 1 + sel.value_len == size);
    CHECK(strlen(sel.type) == sel.type_len && strlen(sel.value) == sel.value_len);
    char *s = sigil_selector_to_string(&sel);
    CHECK(s != NULL && strlen(s) == size && memcmp(s, data, size) == 0);
    CHECK(sigil_selector_parse(s, size, &again, NULL) == 0);
    CHECK(sigil_selector_cmp(&sel, &again) == 0);
    free(s);
    sigil_selector_free(&again);
    sigil_selector_free(&sel);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_selector_set set, back, half = SIGIL_SELECTOR_SET_INIT;
    const char *why = NULL;

    one_selector(data, size);

    int r = sigil_selector_set_parse((const char *)data, size, &set, &why);
    if (r != 0) {
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE || r == SIGIL_ERR_NOMEM);
        CHECK(why != NULL && strncmp(why, "selector", 8) == 0);
        CHECK(set.count == 0 && set.items == NULL);
        return 0;
    }
    CHECK(set.count <= SIGIL_SELECTOR_SET_MAX);
    for (size_t i = 1; i < set.count; i++)
        CHECK(sigil_selector_cmp(&set.items[i - 1], &set.items[i]) < 0);

    char *text = sigil_selector_set_to_string(&set);
    CHECK(text != NULL);
    CHECK(sigil_selector_set_parse(text, strlen(text), &back, NULL) == 0);
    CHECK(sigil_selector_set_equal(&set, &back));
    char *text2 = sigil_selector_set_to_string(&back);
    CHECK(text2 != NULL && strcmp(text, text2) == 0);

    for (size_t i = 0; i < set.count; i++) {
        CHECK(sigil_selector_set_contains(&back, &set.items[i]));
        if (i % 2 == 0)
            CHECK(sigil_selector_set_add(&half, &set.items[i], NULL) == 0);
    }
    bool nonempty = set.count > 0;
    CHECK(sigil_selectors_is_subset(&set, &back) == nonempty);
    CHECK(sigil_selectors_match_exact(&set, &back) == nonempty);
    CHECK(sigil_selectors_match_any(&set, &back) == nonempty);
    CHECK(sigil_selectors_is_subset(&half, &set) == nonempty);
    CHECK(sigil_selectors_match(&set, &half, SIGIL_SELECTOR_MATCH_SUPERSET) == nonempty);
    CHECK(sigil_selectors_is_subset(&set, &half) == (nonempty && half.count == set.count));

    free(text);
    free(text2);
    sigil_selector_set_free(&half);
    sigil_selector_set_free(&back);
    sigil_selector_set_free(&set);
    return 0;
}
