-- Plain GET of the URL's path with no cookies (a first visit), with status counting.
dofile(os.getenv("BENCH_LIB") .. "/common.lua")
