/* A library with a general-dynamic TLS block (built with -fPIC, loaded with dlopen), for
 * early.c: reaching it goes through __tls_get_addr, which allocates it with malloc. */
static __thread char block[1 << 16];

char *tls_block(void) { return block; }
