module floorhook

go 1.22
