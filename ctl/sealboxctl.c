/* sealboxctl - placeholder until the admin CLI lands in this issue. */
#include <stdio.h>
int
main(void)
{
	fprintf(stderr, "sealboxctl: not built yet\n");
	return 1;
}
