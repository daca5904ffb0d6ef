"""``dienhong demo``: seed a demo city exactly as the contract lists it.

Unit ``standing`` (Thường trực HĐND) at the root; the council's committees, the National
Assembly delegation and the council office below it; N communes and wards. Users
``admin``, ``standing``, ``chair``, ``secretary``, ``delegate001``… and ``ward001``… (one
staff user per commune/ward), all with the given password. Feature packages add their
part (the demo meeting) through ``Feature.demo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from server.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from server.context import Context
from server.errors import Conflict, Unprocessable
from server.org.models import Confidentiality, Role, Unit, UnitKind, User

COMMITTEES = [
    "Ban Pháp chế",
    "Ban Kinh tế - Ngân sách",
    "Ban Văn hóa - Xã hội",
    "Ban Đô thị",
]
SURNAMES = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
]
MIDDLE = ["Văn", "Thị", "Hữu", "Đức", "Minh", "Thu", "Quốc", "Thanh", "Ngọc", "Xuân"]
GIVEN = [
    "An",
    "Bình",
    "Cường",
    "Dũng",
    "Giang",
    "Hà",
    "Hải",
    "Hằng",
    "Hiếu",
    "Hoa",
    "Hùng",
    "Hương",
    "Khánh",
    "Lan",
    "Linh",
    "Long",
    "Mai",
    "Nam",
    "Nga",
    "Phúc",
    "Phương",
    "Quân",
    "Quyên",
    "Sơn",
    "Tâm",
    "Thảo",
    "Thắng",
    "Trang",
    "Tuấn",
    "Tùng",
    "Vân",
    "Yến",
]


# Names are drawn by a step coprime with the number of combinations: every index below
# that number gets its own name, and neighbours differ in surname and given name alike.
_NAME_COMBINATIONS = len(SURNAMES) * len(MIDDLE) * len(GIVEN)
_NAME_STEP = 1_237


def person_name(index: int) -> str:
    """A Vietnamese full name, deterministic for an index; distinct for the first
    5,120 indexes (no namesakes among the demo's delegates and staff)."""
    combination = (index * _NAME_STEP) % _NAME_COMBINATIONS
    surname = SURNAMES[combination % len(SURNAMES)]
    rest = combination // len(SURNAMES)
    return f"{surname} {MIDDLE[rest % len(MIDDLE)]} {GIVEN[rest // len(MIDDLE)]}"


@dataclass
class DemoCity:
    root_unit_id: int
    office_unit_id: int
    delegation_unit_id: int
    committee_unit_ids: list[int]
    commune_unit_ids: list[int]
    admin_id: int
    standing_id: int
    chair_id: int
    secretary_id: int
    delegate_ids: list[int] = field(default_factory=list)
    ward_user_ids: list[int] = field(default_factory=list)


async def seed_demo(
    ctx: Context, *, password: str, communes: int = 126, delegates: int = 95
) -> tuple[DemoCity, list[str]]:
    """Create the demo city and let every feature add its part; returns it and a summary."""
    from server.app import default_features

    if len(password) < MIN_PASSWORD_LENGTH:
        raise Unprocessable(
            f"The demo password needs {MIN_PASSWORD_LENGTH} characters.",
            code="weak_password",
            details={"reason": "too_short", "min": MIN_PASSWORD_LENGTH},
        )
    if communes < 1 or delegates < 1 or communes > 5000 or delegates > 1000:
        raise Unprocessable(
            "Communes must be 1-5000 and delegates 1-1000.", code="invalid_demo_size"
        )
    # Every demo account has the same password, so one Argon2 hash serves them all;
    # real accounts are each hashed with their own salt.
    shared_hash = await hash_password(password)
    async with ctx.write() as w:
        session = w.session
        if (await session.execute(select(User.id).where(User.username == "admin"))).first():
            raise Conflict("The demo city is already here.", code="demo_exists")
        now = w.now

        def unit(name: str, kind: UnitKind, parent: int | None) -> Unit:
            row = Unit(name=name, kind=kind.value, parent_id=parent, created_at=now)
            session.add(row)
            return row

        root = unit("Thường trực HĐND thành phố", UnitKind.STANDING_COMMITTEE, None)
        await session.flush()
        office = unit("Văn phòng Đoàn ĐBQH và HĐND thành phố", UnitKind.DEPARTMENT, root.id)
        delegation = unit("Đoàn đại biểu Quốc hội thành phố", UnitKind.DELEGATION, root.id)
        committees = [unit(name, UnitKind.COMMITTEE, root.id) for name in COMMITTEES]
        wards = []
        for index in range(1, communes + 1):
            kind = UnitKind.WARD if index % 2 else UnitKind.COMMUNE
            label = "Phường" if kind is UnitKind.WARD else "Xã"
            wards.append(unit(f"{label} {index:03d}", kind, root.id))
        await session.flush()

        def user(
            username: str,
            name: str,
            unit_id: int,
            roles: list[Role],
            clearance: Confidentiality = Confidentiality.NONE,
            head: bool = False,
        ) -> User:
            row = User(
                username=username,
                display_name=name,
                unit_id=unit_id,
                roles=sorted(r.value for r in roles),
                clearance=clearance.value,
                is_unit_head=head,
                password_hash=shared_hash,
                active=True,
                created_at=now,
            )
            session.add(row)
            return row

        admin = user("admin", "Quản trị hệ thống", office.id, [Role.ADMIN, Role.STAFF])
        standing = user(
            "standing",
            "Phùng Thị Hồng",
            root.id,
            [Role.STANDING],
            Confidentiality.SECRET,
            head=True,
        )
        chair = user(
            "chair",
            "Nguyễn Văn Chủ Tọa",
            root.id,
            [Role.CHAIR, Role.DELEGATE],
            Confidentiality.SECRET,
        )
        secretary = user(
            "secretary",
            "Trần Thị Thư Ký",
            office.id,
            [Role.SECRETARY],
            Confidentiality.CONFIDENTIAL,
        )
        delegate_rows = [
            user(
                f"delegate{i:03d}",
                person_name(i),
                committees[(i - 1) % len(committees)].id,
                [Role.DELEGATE],
                Confidentiality.CONFIDENTIAL,
            )
            for i in range(1, delegates + 1)
        ]
        ward_rows = [
            user(
                f"ward{i:03d}",
                f"Cán bộ {wards[i - 1].name}",
                wards[i - 1].id,
                [Role.STAFF],
                head=True,
            )
            for i in range(1, communes + 1)
        ]
        await session.flush()
        await w.audit(
            None,
            "demo.seed",
            "city",
            {
                "communes": communes,
                "delegates": delegates,
                "units": 3 + len(committees) + len(wards),
                "users": 4 + len(delegate_rows) + len(ward_rows),
            },
        )
        city = DemoCity(
            root_unit_id=root.id,
            office_unit_id=office.id,
            delegation_unit_id=delegation.id,
            committee_unit_ids=[c.id for c in committees],
            commune_unit_ids=[u.id for u in wards],
            admin_id=admin.id,
            standing_id=standing.id,
            chair_id=chair.id,
            secretary_id=secretary.id,
            delegate_ids=[d.id for d in delegate_rows],
            ward_user_ids=[u.id for u in ward_rows],
        )
    summary = [
        f"units: {3 + len(COMMITTEES) + communes} (root 'standing', {len(COMMITTEES)} "
        f"committees, {communes} communes/wards)",
        f"users: admin, standing, chair, secretary, delegate001..delegate{delegates:03d}, "
        f"ward001..ward{communes:03d}",
    ]
    for feature in default_features():
        for hook in feature.demo:
            summary.extend(await hook(ctx, city))
    return city, summary
